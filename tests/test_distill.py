"""The distillation warm start: recorded features and future attention, the listwise fit, the calibration."""

from __future__ import annotations

import math

import pytest
import torch

from namm_suite.evolution.distill import (
    FitConfig,
    UpdateRecord,
    calibrate_threshold,
    fit_scorer,
    listwise_loss,
    ranking_quality,
    record_episode,
)
from namm_suite.namm.features import N_BINS
from namm_suite.namm.scorer import bam_scores, pool_scores


def test_listwise_loss_golden():
    target = torch.tensor([[3.0, 1.0, 0.0, 0.0]])
    uniform = listwise_loss(torch.zeros(1, 4), target)
    assert uniform.item() == pytest.approx(math.log(4))  # cross-entropy against a uniform softmax
    aligned = listwise_loss(torch.tensor([[5.0, 3.0, -5.0, -5.0]]), target)
    reversed_ = listwise_loss(torch.tensor([[-5.0, -5.0, 3.0, 5.0]]), target)
    assert aligned < uniform < reversed_


def _synthetic_records(n: int, seed: int) -> list[UpdateRecord]:
    """Features whose spectral bin 0 (index 8) decides the future attention: exp(2 × feature)."""
    g = torch.Generator().manual_seed(seed)
    records = []
    for i in range(n):
        features = torch.randn(3, 40 + i % 7, 8 + N_BINS, generator=g)
        records.append(UpdateRecord(0, 64, features.half(), torch.exp(2 * features[..., 8])))
    return records


def test_fit_learns_the_feature_that_predicts_future_attention():
    train, heldout = _synthetic_records(60, 0), _synthetic_records(20, 1)
    params = fit_scorer(train, FitConfig(steps=400, lr=1e-2, log_every=100))
    ones = lambda r: torch.ones(r.features.shape[:-1], dtype=torch.bool)
    fitted = ranking_quality(heldout, lambda r: bam_scores(r.features.float(), ones(r), params), 0.25)
    oracle = ranking_quality(heldout, lambda r: r.target, 0.25)
    chance = ranking_quality(heldout, lambda r: torch.rand(r.target.shape, generator=torch.Generator()
                                                          .manual_seed(2)), 0.25)
    assert fitted > chance + 0.3 and fitted > 0.95 * oracle
    assert not any(p.requires_grad for p in params.parameters())


def test_target_power_fits_the_flattened_target():
    records = _synthetic_records(12, 4)
    flattened = [UpdateRecord(r.layer, r.seen, r.features, r.target.sqrt()) for r in records]
    config = {"steps": 30, "lr": 1e-2, "seed": 5}
    powered = fit_scorer(records, FitConfig(**config, target_power=0.5)).to_vector()
    assert torch.allclose(powered, fit_scorer(flattened, FitConfig(**config)).to_vector(), atol=1e-6)
    assert not torch.allclose(powered, fit_scorer(records, FitConfig(**config)).to_vector(), atol=1e-4)


@pytest.mark.parametrize("kernel", [1, 7])
def test_calibration_keeps_the_asked_share(kernel):
    records = _synthetic_records(30, 3)
    params = fit_scorer(records, FitConfig(steps=50, lr=1e-2))
    calibrate_threshold(params, records, keep=0.3, kernel=kernel)

    def scores(kernel: int) -> torch.Tensor:
        ones = [torch.ones(r.features.shape[:-1], dtype=torch.bool) for r in records]
        return torch.cat([pool_scores(bam_scores(r.features.float(), valid, params), valid, kernel).flatten()
                          for r, valid in zip(records, ones)])

    assert (scores(kernel) >= 0).float().mean().item() == pytest.approx(0.3, abs=0.01)
    if kernel > 1:  # the same b_c without pooling keeps far fewer: the pooled share is what was asked
        assert (scores(1) >= 0).float().mean().item() < 0.2


@pytest.mark.slow
def test_record_episode_on_a_tiny_model(tiny_checkpoint):
    from namm_suite.adapters.language import LanguageAdapter
    from namm_suite.tasks import TASKS, TaskContext

    adapter = LanguageAdapter.from_pretrained(str(tiny_checkpoint))
    context = TaskContext(tokenizer=adapter.tokenizer, length=200, seed=1, limit=1)
    episode = TASKS.get("passkey")().episodes(context)[0]
    records = record_episode(adapter, episode, torch.zeros(N_BINS), torch.ones(N_BINS), update_every=64)
    layers = adapter.model.config.num_hidden_layers
    prompt = sum(part.shape[1] for part in adapter.encode_parts(episode.inputs))
    updates = [seen for seen in range(64, prompt, 64)]
    assert sorted({(r.layer, r.seen) for r in records}) == sorted((lay, s) for lay in range(layers) for s in updates)
    for record in records:
        heads = adapter.model.config.num_key_value_heads
        assert record.features.shape == (heads, record.seen, 8 + N_BINS)
        assert record.target.shape == (heads, record.seen)
        assert torch.isfinite(record.features.float()).all() and (record.target >= 0).all()
        # future attention of a prefix: each later query's row sums to at most 1 over these keys, and the
        # answer's share is at most 1 too
        assert record.target.sum(-1).max() <= 2.0 + 1e-3


def test_records_round_trip_through_an_atomic_file(tmp_path):
    from namm_suite.evolution.distill import load_records, save_records

    records = _synthetic_records(3, 4)
    save_records(records, tmp_path / "r.pt")
    back = load_records(tmp_path / "r.pt")
    assert [r.seen for r in back] == [r.seen for r in records]
    assert all(torch.equal(a.features, b.features) and torch.equal(a.target, b.target)
               for a, b in zip(back, records, strict=True))
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.slow
@pytest.mark.parametrize("gamma", [0.99, 0.9])
def test_one_shot_records_hold_what_the_namm_sees_at_the_query_aware_eviction(tiny_checkpoint, gamma):
    from namm_suite.adapters.language import LanguageAdapter
    from namm_suite.evolution.distill import _RecordingNamm
    from namm_suite.manager import MemoryConfig, MemoryManager
    from namm_suite.tasks import TASKS, TaskContext

    adapter = LanguageAdapter.from_pretrained(str(tiny_checkpoint))
    episode = TASKS.get("passkey")().episodes(TaskContext(tokenizer=adapter.tokenizer, length=200, seed=1,
                                                          limit=1))[0]
    mu, var = torch.rand(N_BINS), torch.rand(N_BINS) + 0.5
    records = [r for r in record_episode(adapter, episode, mu, var, update_every=64, one_shot=True, gamma=gamma)
               if r.one_shot]
    prompt = sum(part.shape[1] for part in adapter.encode_parts(episode.inputs))
    assert sorted(r.layer for r in records) == list(range(adapter.model.config.num_hidden_layers))
    policy = _RecordingNamm(gamma=gamma)
    policy.set_stats(mu, var)
    adapter.run(episode, MemoryManager(policy, MemoryConfig(update_every=64, protocol="query-aware", evict="once")))
    for record in records:
        assert record.seen == prompt
        seen_by_namm = policy.features[(record.layer, prompt)].float()
        torch.testing.assert_close(record.features.float(), seen_by_namm, atol=2e-2, rtol=1e-2)  # float16 rows
        # the target is the answer's attention: each answer query's row sums to 1 over prompt and answer
        assert 0 < float(record.target.sum(-1).max()) <= 1 + 1e-3


def test_a_one_shot_share_needs_one_shot_records():
    records = _synthetic_records(4, 6)
    with pytest.raises(ValueError, match="one-shot and scheduled"):
        fit_scorer(records, FitConfig(steps=1, one_shot_share=0.5))
