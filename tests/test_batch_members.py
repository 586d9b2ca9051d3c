"""Batched evaluation with one NAMM θ per batch row equals B separate runs (keep masks and logits, fp32),
with equal and ragged lengths; evaluator.members equals member one by one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from namm_suite.batching import pad_rows
from namm_suite.manager import MemoryConfig, MemoryManager
from namm_suite.namm.params import NUM_PARAMS
from namm_suite.policies import create_policy

from .tiny_models import random_ids, tiny_model

UPDATE = 32


def _thetas(rows: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, NUM_PARAMS, generator=torch.Generator().manual_seed(seed)) * 0.3


def _recording_policy(thetas: torch.Tensor, log: list):
    """A NAMM whose every selection is logged as (layer, valid, positions, keep) per batch row."""
    policy = create_policy("namm")
    if thetas.shape[0] == 1:
        policy.set_vector(thetas[0])
    else:
        policy.set_vectors(thetas)
    select = policy.select

    def recorded(view):
        keep = select(view)
        log.append((view.layer, view.valid.clone(), view.positions.clone(), keep.clone()))
        return keep

    policy.select = recorded
    return policy


def _kept(log: list, row: int) -> list[tuple[int, list[list[int]]]]:
    """Per update and layer of batch row ``row`` that held any real token: the kept positions of each head."""
    out = []
    for layer, valid, positions, keep in log:
        if valid[row].any():
            out.append((layer, [sorted(positions[row, h][keep[row, h]].tolist()) for h in range(keep.shape[1])]))
    return out


def _run(model, ids, thetas, rows: int = 1, **forward):
    log: list = []
    manager = MemoryManager(_recording_policy(thetas, log), MemoryConfig(update_every=UPDATE), rows=rows)
    manager.new_cache()
    logits = manager.forward(model, ids, all_logits=True, **forward)
    return logits, log, manager


@pytest.mark.parametrize("lengths", [(160, 160, 160), (150, 96, 200, 33)], ids=["equal", "ragged"])
def test_batch_with_per_row_theta_equals_separate_runs(lengths):
    model = tiny_model("llama")
    sequences = [random_ids(n, seed=i)[0] for i, n in enumerate(lengths)]
    thetas = _thetas(len(lengths))
    batch = pad_rows(sequences, UPDATE)
    logits, log, manager = _run(model, batch.ids, thetas, valid=batch.valid, position_ids=batch.positions)
    kept_rows = manager.mean_kept_rows()
    evicted = 0
    for b, seq in enumerate(sequences):
        alone_logits, alone_log, alone = _run(model, seq[None], thetas[b:b + 1])
        torch.testing.assert_close(batch.row(logits, b), alone_logits[0], atol=1e-5, rtol=1e-5)
        alone_kept = _kept(alone_log, 0)
        assert _kept(log, b) == alone_kept
        assert kept_rows[b] == pytest.approx(alone.stats().mean_kept, rel=1e-6)
        evicted += sum(len(seq) - len(head) for _, heads in alone_kept for head in heads)
    assert evicted > 0, "the random θ must evict, or the keep masks compare nothing"
    assert len(set(np.round(kept_rows, 3))) > 1, "rows with different θ must keep differently"


def test_one_rows_kappa_never_depends_on_another_row():
    model = tiny_model("llama")
    seq = random_ids(128, seed=3)
    thetas = _thetas(2, seed=5)
    thetas[1] = 0.0
    thetas[1, -1] = 5.0  # b_c = 5: row 1 wants every token (its κ is the whole cache)
    _, log, _ = _run(model, seq.expand(2, -1), thetas)
    _, alone_log, _ = _run(model, seq, thetas[:1])
    assert _kept(log, 0) == _kept(alone_log, 0)
    assert any(len(h) < 32 for _, heads in _kept(log, 0) for h in heads)


def test_shared_prefix_computed_once_equals_the_full_batch():
    model = tiny_model("llama")
    seq = random_ids(160, seed=4)
    thetas = _thetas(3, seed=6)
    full_logits, full_log, full = _run(model, seq.expand(3, -1), thetas)
    batch_sizes: list[int] = []
    hook = model.register_forward_pre_hook(lambda _, args, kwargs: batch_sizes.append(kwargs["input_ids"].shape[0]),
                                            with_kwargs=True)
    try:
        logits, log, shared = _run(model, seq, thetas, rows=3)
    finally:
        hook.remove()
    assert batch_sizes == [1, 3, 3, 3, 3]  # the first update period once, then one row per member
    torch.testing.assert_close(logits, full_logits, atol=1e-5, rtol=1e-5)
    for b in range(3):
        assert _kept(log, b) == _kept(full_log, b)
    assert shared.mean_kept_rows() == pytest.approx(full.mean_kept_rows(), rel=1e-6)
    assert len(set(np.round(shared.mean_kept_rows(), 3))) > 1


def test_stacked_theta_must_match_the_batch():
    model = tiny_model("llama")
    with pytest.raises(ValueError, match="3 parameter rows but the batch has 2"):
        _run(model, random_ids(64).expand(2, -1), _thetas(3))


def test_pad_rows_left_pads_whole_periods():
    batch = pad_rows([torch.arange(5), torch.arange(40), torch.arange(70)], 32)
    assert batch.ids.shape == (3, 96) and batch.offsets == [64, 32, 0]
    assert batch.valid.sum(1).tolist() == [5, 40, 70]
    assert batch.positions[0, 64:69].tolist() == list(range(5))
    with pytest.raises(ValueError, match="non-empty"):
        pad_rows([torch.arange(0)], 32)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", [{}, {"protocol": "query-aware", "evict": "once", "budget_fraction": 0.25},
                                      {"protocol": "query-aware", "evict": "once", "budget_fraction": 0.25,
                                       "kernel": 5},
                                      {"protocol": "query-aware", "evict": "once", "budget_fraction": 0.25,
                                       "kernel": 5, "gamma": 0.9}],
                         ids=["scheduled", "query-aware-once", "query-aware-once-pooled", "query-aware-gamma"])
def test_evaluator_members_batched_equal_one_by_one(tiny_checkpoint, protocol):
    """Under the one-shot protocol the rows' features are computed once (PolicyView.shared_rows)."""
    from namm_suite.evolution import EvolutionConfig, FitnessEvaluator, Stage

    config = EvolutionConfig(stages=[Stage("s", ["passkey"], 1)], model=str(tiny_checkpoint), length=160,
                             update_every=32, pool_size=2, episodes_per_task=2, batch_members=3, **protocol)
    evaluator = FitnessEvaluator(config)
    episodes = evaluator.pool("passkey")
    stats = evaluator.statistics(episodes)
    thetas = _thetas(4, seed=2).numpy()
    batched = evaluator.members(thetas, stats.mean, stats.var, episodes)  # groups of 3 and 1
    for theta, results in zip(thetas, batched, strict=True):
        alone = evaluator.member(theta, stats.mean, stats.var, episodes)
        assert [r.score for r in results] == pytest.approx([r.score for r in alone], rel=1e-5)
        assert [r.mean_kept for r in results] == pytest.approx([r.mean_kept for r in alone], rel=1e-6)
    # the members really differ (in what they keep, or, when every one fills its cap, in their scores)
    assert len({(round(m[0].mean_kept, 3), round(m[0].score, 6)) for m in batched}) > 1


@pytest.mark.slow
def test_evaluator_measures_and_runs_members_under_the_configs_gamma(tiny_checkpoint):
    from dataclasses import replace

    from namm_suite.evolution import EvolutionConfig, FitnessEvaluator, Stage

    config = EvolutionConfig(stages=[Stage("s", ["passkey"], 1)], model=str(tiny_checkpoint), length=160,
                             update_every=32, pool_size=1, episodes_per_task=1, selection="threshold")
    spec = FitnessEvaluator(config)
    fast = FitnessEvaluator(replace(config, gamma=0.5), adapter=spec.adapter)
    episodes = spec.pool("passkey")
    stats, fast_stats = spec.statistics(episodes), fast.statistics(episodes)
    assert stats.count == fast_stats.count and not torch.allclose(stats.mean, fast_stats.mean)
    theta = _thetas(1, seed=3).numpy()[0]
    kept = {e.mean_kept for e in (spec.member(theta, stats.mean, stats.var, episodes)[0],
                                  fast.member(theta, stats.mean, stats.var, episodes)[0])}
    assert len(kept) == 2  # the same θ and statistics keep other tokens under another γ
