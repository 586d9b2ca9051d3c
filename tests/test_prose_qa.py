"""The LongBench-style prose QA generator: lengths, planted facts, distractors, the document split."""

from __future__ import annotations

import pytest

from namm_suite.tasks import TASKS, TaskContext
from namm_suite.tasks.base import TaskDataError
from namm_suite.tasks.language.prose_qa import documents, longbench_record, make_facts, split_of, topics

from .char_tokenizer import CharTokenizer


def _episodes(task: str, length: int = 3000, **options):
    context = TaskContext(tokenizer=CharTokenizer(), length=length, seed=3, options=options)
    return TASKS.get(task)().episodes(context)


def test_train_and_heldout_never_share_a_document():
    train, heldout = set(documents("train")), set(documents("heldout"))
    assert train and heldout and not train & heldout
    assert train | heldout == set(documents("all")) == set(topics())
    assert all(split_of(name) == "heldout" for name in heldout)
    assert 0.1 < len(heldout) / len(topics()) < 0.45


@pytest.mark.parametrize("task", ["prose_qa", "prose_qa_multi"])
def test_episodes_hold_the_fact_at_its_depth_with_distractors(task):
    eps = _episodes(task, depths=[0.1, 0.9], n_distractors=3)
    assert [e.metadata["depth"] for e in eps] == [0.1, 0.9]
    for episode in eps:
        prompt, context = episode.inputs["prompt"], episode.inputs["context"]
        assert abs(episode.metadata["n_tokens"] - 3000) <= 400  # within half a sentence of the target
        assert context in prompt and episode.inputs["question"] in prompt
        assert prompt.index(episode.inputs["question"]) > prompt.index(context)
        assert episode.inputs["cue"] == "Answer:" and prompt.endswith("Answer:")
        fact = episode.metadata["fact"]
        assert fact in context and episode.references[0] in fact
        # the depth places the fact: early for 0.1, late for 0.9
        where = context.index(fact) / len(context)
        assert where < 0.3 if episode.metadata["depth"] == 0.1 else where > 0.7
    if task == "prose_qa_multi":
        assert "Passage 1:" in eps[0].inputs["context"] and "Passage 2:" in eps[0].inputs["context"]


def test_heldout_prose_comes_only_from_heldout_documents():
    episode = _episodes("prose_qa", split="heldout")[0]
    heldout = {s for name in documents("heldout") for s in topics()[name]}
    train = {s for name in documents("train") for s in topics()[name]} - heldout
    context = episode.inputs["context"]
    assert any(s in context for s in heldout)
    assert not any(s in context for s in train if len(s) > 60)


def test_distractors_are_facts_of_the_same_kind_about_other_subjects():
    import random

    facts = make_facts(random.Random(1), 4)
    assert len({f.question for f in facts}) == 4 and len({f.sentence for f in facts}) == 4
    # same template: every question shares its first three words
    assert len({" ".join(f.question.split()[:3]) for f in facts}) == 1


def test_same_seed_same_episodes_and_scores():
    a, b = _episodes("prose_qa"), _episodes("prose_qa")
    assert [e.inputs["prompt"] for e in a] == [e.inputs["prompt"] for e in b]
    task, episode = TASKS.get("prose_qa")(), a[0]
    assert task.score(episode.references[0], episode) == 1.0
    assert task.score("nothing like it", episode) == 0.0


def test_longbench_record_and_bad_split():
    episode = _episodes("prose_qa")[0]
    record = longbench_record(episode)
    assert record["input"] == episode.inputs["question"] and record["answers"] == list(episode.references)
    assert record["context"] == episode.inputs["context"] and record["_id"] == episode.episode_id
    with pytest.raises(TaskDataError, match="split"):
        _episodes("prose_qa", split="validation")
