"""The real fitness evaluation on a tiny model: in-process, process-pool and Ray backends agree exactly."""

from __future__ import annotations

import numpy as np
import pytest

from namm_suite.evolution import EvolutionConfig, FitnessEvaluator, Stage, load_state, run_evolution
from namm_suite.evolution.backends import InProcessBackend, ProcessPoolBackend, RayBackend


def _config(model: str, **overrides) -> EvolutionConfig:
    base = {"stages": [Stage("s", ["passkey"], 2)], "model": str(model), "length": 160, "update_every": 32,
            "population": 4, "episodes_per_task": 2, "pool_size": 3, "eval_every": 1, "workers": 2}
    base.update(overrides)
    return EvolutionConfig(**base)


def _calls(config: EvolutionConfig, evaluator: FitnessEvaluator):
    episodes = evaluator.pool("passkey")[:2]
    stats = evaluator.statistics(episodes)
    rng = np.random.default_rng(0)
    return [(rng.normal(0, 0.5, (1, 4172)), stats.mean, stats.var, episodes) for _ in range(3)]  # 1 member/call


def _flat(results):
    return [(r.score, round(r.mean_kept, 6)) for group in results for member in group for r in member]


def _same(got, expected) -> bool:
    """Equal kept tokens (every eviction) and scores within 1e-5 relative: the dense likelihood is a float sum
    whose last digits depend on the worker's thread count."""
    got, expected = _flat(got), _flat(expected)
    return len(got) == len(expected) and all(
        kept == kept_e and score == pytest.approx(score_e, rel=1e-5)
        for (score, kept), (score_e, kept_e) in zip(got, expected, strict=True))


def test_process_pool_matches_in_process(tiny_checkpoint):
    config = _config(tiny_checkpoint)
    evaluator = FitnessEvaluator(config)
    calls = _calls(config, evaluator)
    expected = InProcessBackend(evaluator).map(calls)
    # random parameters evict differently per member: the comparison is not trivial
    assert len({round(g[0][0].mean_kept, 3) for g in expected}) > 1
    pool = ProcessPoolBackend(config)
    try:
        assert _same(pool.map(calls), expected)
    finally:
        pool.close()


def test_ray_backend_matches_in_process(tiny_checkpoint):
    pytest.importorskip("ray", reason="the ray extra is not installed")
    config = _config(tiny_checkpoint)
    evaluator = FitnessEvaluator(config)
    calls = _calls(config, evaluator)
    expected = InProcessBackend(evaluator).map(calls)
    backend = RayBackend(config)
    try:
        assert _same(backend.map(calls), expected)
    finally:
        backend.close()
        backend.ray.shutdown()


def test_evolution_end_to_end_on_tiny_model(tiny_checkpoint, tmp_path):
    config = _config(tiny_checkpoint, workers=1)
    state = run_evolution(config, tmp_path)
    assert state.generation == 2
    assert state.count > 0 and state.var.shape == (17,)
    assert len(state.full) == 3  # full-cache results cached once per pool episode
    assert load_state(tmp_path / "state.pkl").generation == 2
