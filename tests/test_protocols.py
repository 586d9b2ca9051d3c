"""Protocols (scheduled / context / query-aware), relative budgets, prompt layout and truncation warnings."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from namm_suite.adapters.language import LanguageAdapter, split_prompt
from namm_suite.manager import MemoryConfig, MemoryManager
from namm_suite.policies import POLICIES, create_policy
from namm_suite.report import write_report
from namm_suite.results import read_rows
from namm_suite.runner import SweepConfig, run_sweep
from namm_suite.tasks import TASKS, Episode, TaskContext

from .char_tokenizer import CharTokenizer
from .fake_sweep import FakeAdapter
from .tiny_models import random_ids, tiny_model

CONTEXT = "Read this. " + " ".join(f"Fact {i}: the box {i} holds {i * 7} coins." for i in range(30))
QUESTION = "\n\nHow many coins does box 12 hold?\n"
EPISODE = Episode("toy", "e0", {"prompt": CONTEXT + QUESTION + "Answer:", "context": CONTEXT,
                                "question": QUESTION.strip(), "cue": "Answer:", "chat": True}, ("84",),
                  max_new_tokens=6)


@pytest.fixture(scope="module")
def adapter(tiny_checkpoint):
    return LanguageAdapter.from_pretrained(str(tiny_checkpoint))


def evicting_policy(name: str):
    """Every registered policy; the NAMM with random θ, so that it evicts."""
    policy = create_policy(name)
    if name == "namm":
        policy.set_vector(torch.randn(policy.vector().numel(), generator=torch.Generator().manual_seed(0)))
    return policy


def held_positions(manager: MemoryManager) -> list[set[int]]:
    """Positions held by every (layer, head) of the manager's cache."""
    out = []
    for layer in manager.cache.layers:
        for head in range(layer.positions.shape[1]):
            out.append(set(layer.positions[0, head][layer.valid[0, head]].tolist()))
    return out


@pytest.mark.parametrize("evict", ["schedule", "once"])
@pytest.mark.parametrize("name", POLICIES.names())
def test_context_protocol_never_evicts_question_or_answer(adapter, name, evict):
    budget = None if name == "full" else 40
    manager = MemoryManager(evicting_policy(name), MemoryConfig(update_every=32, budget=budget, protocol="context",
                                                                evict=evict))
    prediction = adapter.run(EPISODE, manager)
    stats = manager.stats()
    n_context = stats.context_tokens
    assert prediction.extra["question_tokens"] > 0 and prediction.extra["new_tokens"] > 0
    later = set(range(n_context, stats.tokens_seen))  # question, assistant header, cue and answer tokens
    for held in held_positions(manager):
        assert later <= held
    if name not in ("full", "namm"):  # the context was compressed to the budget
        assert stats.context_kept == budget


def test_scheduled_protocol_does_evict_question_tokens(adapter):
    """The control: under ``scheduled`` the same check fails, so the test above can fail."""
    manager = MemoryManager(create_policy("keynorm"), MemoryConfig(update_every=32, budget=40))
    adapter.run(EPISODE, manager)
    stats = manager.stats()
    later = set(range(stats.context_tokens - adapter.encode_parts(EPISODE.inputs)[1].shape[1], stats.tokens_seen))
    assert any(not later <= held for held in held_positions(manager))


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75])
@pytest.mark.parametrize("evict", ["schedule", "once"])
@pytest.mark.parametrize("name", ["h2o", "keynorm", "random", "snapkv", "streaming", "tova"])
def test_relative_budget_keeps_its_share_of_the_context(name, evict, fraction):
    model, n_context = tiny_model("llama"), 203
    manager = MemoryManager(create_policy(name), MemoryConfig(update_every=32, budget_fraction=fraction,
                                                              protocol="context", evict=evict))
    manager.new_cache(context_tokens=n_context)
    manager.forward(model, random_ids(n_context))
    manager.freeze()
    expected = round(fraction * n_context)
    for layer in manager.cache.layers:
        assert layer.held().tolist() == [[expected] * layer.held().shape[1]]
    manager.forward(model, random_ids(9, seed=1))  # the question: nothing evicted any more
    assert manager.stats().final_kept == expected + 9 and manager.stats().budget_tokens == expected


def test_every_protocol_reads_the_same_tokens(adapter):
    answers = set()
    for protocol in ("scheduled", "context", "query-aware"):
        manager = MemoryManager(create_policy("full"), MemoryConfig(update_every=32, protocol=protocol))
        answers.add(adapter.run(EPISODE, manager).output)
    assert len(answers) == 1


def test_answer_cue_follows_the_assistant_header(adapter):
    context, question = adapter.encode_parts(EPISODE.inputs)
    tokenizer = adapter.tokenizer
    assert tokenizer.decode(question[0]).endswith("<|im_start|>assistant\nAnswer:")
    assert tokenizer.decode(context[0]).endswith(CONTEXT) and "How many" not in tokenizer.decode(context[0])
    assert split_prompt({"prompt": "abc"}) == ("abc", "", "")
    with pytest.raises(ValueError, match="'context' is not part of the prompt"):
        split_prompt({"prompt": "abc", "context": "zzz"})


@pytest.mark.parametrize("protocol", ["scheduled", "context", "query-aware"])
def test_each_protocol_is_in_every_row_and_the_report_label(tmp_path, protocol):
    out = tmp_path / "r.jsonl"
    config = SweepConfig(tasks=["toy_echo"], policies=["full", "h2o"], cache_sizes=[8], limit=2, protocol=protocol)
    run_sweep(config, out, adapter=FakeAdapter())
    rows = read_rows(out)
    assert rows and {row["protocol"] for row in rows} == {protocol}
    text = write_report([out], tmp_path / "report.md").paths[0].read_text()
    assert f"### toy_echo ({protocol} protocol)" in text
    assert all(other not in text for other in ("scheduled protocol", "context protocol", "query-aware protocol")
               if other != f"{protocol} protocol")


def test_a_report_that_mixes_prompt_lengths_has_a_table_per_length(tmp_path):
    out = tmp_path / "r.jsonl"
    for length in (64, 128):
        config = SweepConfig(tasks=["toy_echo"], policies=["full", "h2o"], cache_sizes=[8], limit=2, length=length)
        run_sweep(config, out, adapter=FakeAdapter())
    report = write_report([out], tmp_path / "report.md")
    text = report.paths[0].read_text()
    assert "### toy_echo (scheduled protocol, 64 tokens)" in text and "### toy_echo (scheduled protocol, 128 tokens)" in text
    assert "n=4" not in text and text.count("n=2") == 4  # each length's 2 episodes, never pooled
    assert {p.name for p in report.paths[1:]} == {"report_toy_echo_64.png", "report_toy_echo_128.png"}


def test_protocol_and_relative_budget_enter_the_resume_key(tmp_path):
    out = tmp_path / "r.jsonl"
    base = {"tasks": ["toy_echo"], "policies": ["h2o"], "cache_sizes": [8], "limit": 2}
    assert run_sweep(SweepConfig(**base), out, adapter=FakeAdapter()).written == 2
    assert run_sweep(SweepConfig(**base, protocol="context"), out, adapter=FakeAdapter()).written == 2
    assert run_sweep(SweepConfig(**{**base, "cache_sizes": ["25%"]}), out, adapter=FakeAdapter()).written == 2
    assert run_sweep(SweepConfig(**base, protocol="context"), out, adapter=FakeAdapter()).written == 0
    with pytest.raises(ValueError, match="percentage"):
        SweepConfig(**{**base, "cache_sizes": ["0%"]})
    with pytest.raises(ValueError, match="evict='once'"):
        SweepConfig(**base, evict="once")


def test_truncated_prompts_warn_with_the_count(tmp_path, caplog):
    records = [{"context": "word " * n, "input": "Which word?", "answers": ["word"], "_id": f"e{n}"}
               for n in (10, 400, 900)]
    (tmp_path / "multifieldqa_en.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    task = TASKS.get("longbench_multifieldqa_en")()
    with caplog.at_level(logging.WARNING):
        episodes = task.episodes(TaskContext(tokenizer=CharTokenizer(), length=1064, data_path=tmp_path))
    assert [e.metadata["truncated"] for e in episodes] == [False, True, True]
    assert "longbench_multifieldqa_en: 2 of 3 prompts were longer than 1000 tokens" in caplog.text
    for episode in episodes:  # the context is found in the (cut) prompt, the cue ends it
        _, question, cue = split_prompt(episode.inputs)
        assert cue == "Answer:" and question.endswith("Question: Which word?\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        task.episodes(TaskContext(tokenizer=CharTokenizer(), length=8000, data_path=tmp_path))
    assert "were longer" not in caplog.text


def test_decision_adapter_takes_only_the_scheduled_protocol_and_token_budgets():
    for bad in ({"protocol": "context"}, {"cache_sizes": ["25%"]}):
        with pytest.raises(ValueError, match="--protocol scheduled and cache sizes in tokens"):
            SweepConfig(**{"tasks": ["toy_echo"], "policies": ["h2o"], "cache_sizes": [8], "adapter": "decision",
                           **bad})
