"""Synthetic long-context tasks: lengths in SmolLM2 tokens, depths, determinism, options and scoring."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from namm_suite.tasks import TASKS, TaskContext, TaskDataError, describe_tasks
from namm_suite.tasks.language.synthetic import make_passkey, passkey_score

from .char_tokenizer import CharTokenizer

SYNTHETIC = ["passkey", "multikey_needle", "kv_retrieval", "variable_tracking"]


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    from transformers import AutoTokenizer

    from namm_suite.adapters.models import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))


def episodes(name, tokenizer, length=1024, seed=0, **options):
    return TASKS.get(name)().episodes(TaskContext(tokenizer=tokenizer, length=length, seed=seed, options=options))


@pytest.mark.parametrize("name", SYNTHETIC)
@pytest.mark.parametrize("length", [300, 1024, 4096])
def test_prompt_lengths_in_model_tokens(smollm2_tokenizer, name, length):
    eps = episodes(name, smollm2_tokenizer, length)
    # kv pairs are ~70 SmolLM2 tokens each, so they land within half a pair; filler sentences within a few tokens
    tolerance = 36 if name == "kv_retrieval" else 4
    for ep in eps:
        n = len(smollm2_tokenizer(ep.inputs["prompt"]).input_ids)
        assert n == ep.metadata["n_tokens"]
        assert abs(n - length) <= tolerance
        if length >= 1024:
            assert abs(n - length) <= 0.05 * length
        assert ep.inputs["chat"] is True and ep.inputs["prompt"].rstrip().endswith(".")
        assert all(ref in ep.inputs["prompt"] for ref in ep.references)


@pytest.mark.parametrize("name", ["passkey", "multikey_needle", "kv_retrieval"])
def test_needle_sits_at_its_depth(name):
    tok = CharTokenizer()
    eps = episodes(name, tok, length=4000, depths=[0.0, 0.5, 1.0])
    assert [ep.metadata["depth"] for ep in eps] == [0.0, 0.5, 1.0]
    for ep in eps:
        prompt = ep.inputs["prompt"]
        question = prompt.rindex("\n\n")
        position = prompt.index(ep.references[0]) / question  # where the answer sits in the haystack
        assert abs(position - ep.metadata["depth"]) < 0.08


def test_passkey_grid_ids_and_limit():
    eps = episodes("passkey", CharTokenizer(), lengths=[500, 800], depths=[0.2, 0.8], repeats=2)
    assert len(eps) == 8
    assert len({ep.episode_id for ep in eps}) == 8 and eps[0].episode_id == "s0-L500-d0.2-r0"
    assert {ep.metadata["length"] for ep in eps} == {500, 800}
    assert len({ep.references for ep in eps}) > 1  # fresh keys per cell and repeat
    limited = TASKS.get("passkey")().episodes(TaskContext(tokenizer=CharTokenizer(), length=500, limit=3))
    assert [ep.episode_id for ep in limited] == [ep.episode_id for ep in episodes("passkey", CharTokenizer(), 500)[:3]]


def test_first_repeat_extends_an_earlier_run_with_new_prompts():
    tok = CharTokenizer()
    ten = episodes("passkey", tok, 500, depths=[0.2, 0.8], repeats=10)
    first = episodes("passkey", tok, 500, depths=[0.2, 0.8], repeats=5)
    later = episodes("passkey", tok, 500, depths=[0.2, 0.8], repeats=5, first_repeat=5)
    assert sorted(first + later, key=lambda e: e.episode_id) == sorted(ten, key=lambda e: e.episode_id)
    assert {e.metadata["repeat"] for e in later} == {5, 6, 7, 8, 9}
    with pytest.raises(TaskDataError, match="field 'first_repeat'"):
        episodes("passkey", tok, first_repeat=-1)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from(SYNTHETIC))
def test_same_seed_same_episodes(seed, name):
    tok = CharTokenizer()
    first = episodes(name, tok, length=600, seed=seed)
    assert first == episodes(name, tok, length=600, seed=seed)
    other = episodes(name, tok, length=600, seed=seed + 1)
    assert [e.references for e in first] != [e.references for e in other]
    assert all(e.episode_id.startswith(f"s{seed}-") for e in first)


def test_determinism_with_the_model_tokenizer(smollm2_tokenizer):
    for name in SYNTHETIC:
        assert episodes(name, smollm2_tokenizer, 700, seed=3) == episodes(name, smollm2_tokenizer, 700, seed=3)


def test_scores():
    tok = CharTokenizer()
    for name in ["passkey", "multikey_needle", "kv_retrieval"]:
        task = TASKS.get(name)()
        ep = task.episodes(TaskContext(tokenizer=tok, length=800, limit=1))[0]
        assert task.score(f"It is {ep.references[0]}.", ep) == 1.0
        assert task.score("I do not know.", ep) == 0.0
    task = TASKS.get("variable_tracking")(n_hops=3)
    ep = task.episodes(TaskContext(tokenizer=tok, length=800))[0]
    assert len(ep.references) == 4
    assert task.score(", ".join(ep.references[:2]), ep) == 0.5
    assert task.score(", ".join(ep.references).lower(), ep) == 1.0


def test_variable_tracking_chains_in_order_with_distractors():
    ep = episodes("variable_tracking", CharTokenizer(), length=1500, n_chains=3, n_hops=2)[0]
    prompt, names, value = ep.inputs["prompt"], ep.references, ep.metadata["value"]
    assert f"VAR {names[0]} = {value}." in prompt
    positions = [prompt.index(f"VAR {name} =") for name in names]
    assert positions == sorted(positions)
    assert len(re.findall(r"VAR [A-Z]{5} =", prompt)) == 9  # 3 chains x (1 value + 2 hops)
    assert f"assigned the value {value}" in prompt


def test_kv_prompt_is_a_json_object_of_uuid_pairs():
    ep = episodes("kv_retrieval", CharTokenizer(), length=1200, depths=[0.5])[0]
    prompt = ep.inputs["prompt"]
    body = prompt[prompt.index("{"):prompt.index("}") + 1]
    pairs = json.loads(body)
    assert pairs[ep.metadata["key"]] == ep.references[0] and len(pairs) == ep.metadata["n_pairs"]
    assert prompt.count(ep.metadata["key"]) == 2


def test_bad_options_and_contexts_are_named():
    tok = CharTokenizer()
    with pytest.raises(TaskDataError, match=r"field 'depths'.*\[0, 1\]"):
        episodes("passkey", tok, depths=[0.5, 1.5])
    with pytest.raises(TaskDataError, match="field 'depht'.*valid options: lengths, repeats, first_repeat, max_new_tokens, depths"):
        episodes("passkey", tok, depht=[0.5])
    with pytest.raises(TaskDataError, match="field 'n_needles'"):
        TASKS.get("multikey_needle")(n_needles=0)
    with pytest.raises(TaskDataError, match="field 'lengths'"):
        episodes("kv_retrieval", tok, lengths=[10])
    with pytest.raises(ValueError, match="TaskContext.tokenizer is required"):
        episodes("passkey", None)
    with pytest.raises(ValueError, match="below the .* tokens the prompt needs"):
        episodes("variable_tracking", tok, length=100, n_hops=32)


def test_make_passkey_functional_api(smollm2_tokenizer):
    ep = make_passkey(smollm2_tokenizer, 600, depth=0.5, seed=3)
    assert ep.answer in ep.prompt and abs(len(smollm2_tokenizer(ep.prompt).input_ids) - 600) <= 4
    assert make_passkey(smollm2_tokenizer, 600, depth=0.5, seed=3) == ep
    assert passkey_score(f"The key is {ep.answer}", ep.answer) == 1.0
    with pytest.raises(ValueError, match="depth"):
        make_passkey(smollm2_tokenizer, 600, depth=2.0, seed=0)


def test_describe_tasks_lists_every_task():
    specs = {spec.name: spec for spec in describe_tasks()}
    assert set(SYNTHETIC) <= set(specs)
    for spec in specs.values():
        assert spec.metric and spec.source and spec.description and spec.modality
    assert specs["passkey"].metric == "contains" and specs["variable_tracking"].metric == "fraction_present"
