"""The dense evolution fitness: teacher-forced answer likelihood under a member's memory (slow: SmolLM2)."""

from __future__ import annotations

import math

import pytest
import torch

from namm_suite.evolution import EvolutionConfig, Stage
from namm_suite.evolution.fitness import FitnessEvaluator, normalised_fitness
from namm_suite.namm.params import NUM_PARAMS, PARAM_OFFSETS
from namm_suite.policies import create_policy
from namm_suite.tasks import TaskContext

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def evaluator():
    config = EvolutionConfig(stages=[Stage("s", ["passkey"], 1)], length=256, update_every=64, pool_size=2,
                             episodes_per_task=2, fitness="likelihood")
    return FitnessEvaluator(config)


@pytest.fixture(scope="module")
def episodes(evaluator):
    # the key in the middle of the prompt: a memory that forgets the middle loses it
    context = TaskContext(tokenizer=evaluator.adapter.tokenizer, length=256, seed=7, limit=2,
                          options={"depths": [0.5]})
    return evaluator.task("passkey").episodes(context)


def test_likelihood_is_a_probability_and_matches_a_manual_teacher_forced_pass(evaluator, episodes):
    adapter, episode = evaluator.adapter, episodes[0]
    result = evaluator.full(episode)
    assert 0.0 < result.score <= 1.0
    prompt = torch.cat(adapter.encode_parts(episode.inputs), dim=1)
    answer = adapter.tokenizer(episode.references[0], add_special_tokens=False, return_tensors="pt").input_ids
    ids = torch.cat([prompt, answer], dim=1)
    with torch.no_grad():
        logits = adapter.model(ids).logits[0, prompt.shape[1] - 1:-1]
    expected = math.exp(float(torch.log_softmax(logits, -1).gather(-1, answer[0, :, None]).mean()))
    assert result.score == pytest.approx(expected, rel=1e-3)


def test_dense_fitness_of_theta_zero_is_exactly_one(evaluator, episodes):
    zero = torch.zeros(NUM_PARAMS)
    member = evaluator.member(zero.numpy(), torch.zeros(17), torch.ones(17), episodes)
    full = [evaluator.full(e) for e in episodes]
    fitness, kept = normalised_fitness({"passkey": member}, {"passkey": full})
    assert fitness == pytest.approx(1.0, abs=1e-5)  # eager (NAMM) vs SDPA (full) attention rounding
    assert kept == pytest.approx(1.0, abs=1e-6)


def test_a_member_that_evicts_the_answer_span_scores_lower(evaluator, episodes):
    # b_c = -1 scores every token below the threshold: only the newest token of each head survives an
    # update, so the key in the middle of the prompt is gone when the question is read
    forgetful = torch.zeros(NUM_PARAMS)
    forgetful[PARAM_OFFSETS["b_c"][0]] = -1.0
    keeping = torch.zeros(NUM_PARAMS)
    mu, var = torch.zeros(17), torch.ones(17)
    full = {"passkey": [evaluator.full(e) for e in episodes]}
    lost = normalised_fitness({"passkey": evaluator.member(forgetful.numpy(), mu, var, episodes)}, full)
    kept = normalised_fitness({"passkey": evaluator.member(keeping.numpy(), mu, var, episodes)}, full)
    assert lost[0] < 0.5 * kept[0]
    assert lost[1] < kept[1]


def test_budget_fraction_caps_the_namm_per_episode(evaluator, episodes):
    from dataclasses import replace

    capped = FitnessEvaluator(replace(evaluator.config, budget_fraction=0.25), adapter=evaluator.adapter)
    assert capped.memory(create_policy("full")).budget_fraction is None
    result = capped.member(torch.zeros(NUM_PARAMS).numpy(), torch.zeros(17), torch.ones(17), episodes[:1])[0]
    full = capped.full(episodes[0])
    # θ = 0 wants every token; the cap holds it to a quarter of the prompt after each update
    assert result.mean_kept < 0.7 * full.mean_kept  # time-averaged: the cache refills between updates
    assert result.score < full.score


def test_config_rejects_unknown_fitness_and_bad_fraction():
    with pytest.raises(ValueError, match="fitness"):
        EvolutionConfig(stages=[Stage("s", ["passkey"], 1)], fitness="bleu")
    with pytest.raises(ValueError, match="budget_fraction"):
        EvolutionConfig(stages=[Stage("s", ["passkey"], 1)], budget_fraction=1.5)
    with pytest.raises(ValueError, match="protocol"):
        EvolutionConfig(stages=[Stage("s", ["passkey"], 1)], protocol="one-shot")


def test_episodes_are_read_under_the_configured_protocol():
    config = EvolutionConfig(stages=[Stage("s", ["passkey"], 1)], protocol="query-aware", evict="once",
                             budget_fraction=0.25)
    evaluator = FitnessEvaluator.__new__(FitnessEvaluator)  # no model needed to build the schedule
    evaluator.config = config
    memory = evaluator.memory(create_policy("namm"))
    assert (memory.protocol, memory.evict, memory.budget_fraction) == ("query-aware", "once", 0.25)


def test_after_an_answer_cue_the_reference_is_scored_with_its_leading_space(evaluator):
    from namm_suite.manager import MemoryConfig, MemoryManager

    adapter = evaluator.adapter
    context = TaskContext(tokenizer=adapter.tokenizer, length=256, seed=3, limit=1, options={"split": "train"})
    episode = evaluator.task("prose_qa").episodes(context)[0]
    assert episode.inputs["cue"] == "Answer:"
    result = adapter.answer_likelihood(episode, MemoryManager(create_policy("full"), MemoryConfig(update_every=64)))
    spaced = adapter.tokenizer(" " + episode.references[0], add_special_tokens=False).input_ids
    bare = adapter.tokenizer(episode.references[0], add_special_tokens=False).input_ids
    assert spaced != bare and result.extra["answer_tokens"] == len(spaced)
