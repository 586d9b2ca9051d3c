"""CMA-ES evolution: curriculum, checkpoints, exact resume after a crash (SIGKILL), spec constants."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from namm_suite.evolution import EvolutionConfig, load_state, run_evolution
from namm_suite.evolution.backends import InProcessBackend
from namm_suite.evolution.cmaes_constants import spec_constants
from namm_suite.policies import create_policy

from .fake_evolution import FakeEvaluator, fake_config

ROOT = Path(__file__).resolve().parent.parent


def _run(out: Path, config: EvolutionConfig | None = None, **kwargs):
    evaluator = FakeEvaluator()
    return run_evolution(config or fake_config(), out, evaluator=evaluator, backend=InProcessBackend(evaluator),
                         **kwargs)


def _log(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("seconds")
    return rows


def test_curriculum_checkpoints_and_log(tmp_path):
    state = _run(tmp_path)
    rows = _log(tmp_path)
    assert [r["generation"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["stage"] for r in rows] == [1, 1, 1, 2, 2, 2]
    assert rows[0]["tasks"] == ["a"] and rows[3]["tasks"] == ["a", "b"]
    # each stage's first row carries the bar its search mean must beat (evaluated before the generation)
    assert [r["generation"] for r in rows if "stage_start_fitness" in r] == [1, 4]
    assert state.best[0][0] >= rows[0]["stage_start_fitness"]
    assert all(r["fitness_best"] >= r["fitness_mean"] for r in rows)
    assert state.generation == 6 and state.stage == 1
    # the search mean improved on the start bar, so a checkpoint exists and loads as a NAMM policy
    assert (tmp_path / "namm_best.safetensors").exists()
    # namm_top: the best evaluated mean whatever the bar; namm_last: the latest evaluation
    evaluated = [r["eval_fitness"] for r in rows if "eval_fitness" in r]
    top = create_policy("namm", checkpoint=str(tmp_path / "namm_top"))
    assert top.provenance["eval_fitness"] == max(evaluated)
    last = create_policy("namm", checkpoint=str(tmp_path / "namm_last"))
    assert last.provenance["eval_fitness"] == evaluated[-1]
    policy = create_policy("namm", checkpoint=str(tmp_path / "namm_best"))
    assert policy.provenance["evolution"]["population"] == 6
    assert np.allclose(policy.vector().numpy(), load_state(tmp_path / "state.pkl").es.mean, atol=1e-7) or \
        policy.provenance["generation"] < 6


def test_checkpoints_record_the_runs_namm_settings(tmp_path):
    from namm_suite.namm import load_namm

    _run(tmp_path, fake_config(kernel=3, selection="threshold", update_every=32, gamma=0.95))
    hparams = load_namm(tmp_path / "namm_last").hparams
    assert (hparams.kernel, hparams.selection, hparams.update_every, hparams.gamma) == (3, "threshold", 32, 0.95)


@pytest.mark.parametrize("gamma", [0.0, 1.0, -0.5])
def test_a_gamma_outside_the_open_unit_interval_is_refused(gamma):
    with pytest.raises(ValueError, match="invalid gamma"):
        fake_config(gamma=gamma)


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    _run(tmp_path / "straight")
    _run(tmp_path / "split", max_generations=2)
    assert len(_log(tmp_path / "split")) == 2
    _run(tmp_path / "split", max_generations=1)
    _run(tmp_path / "split")
    assert _log(tmp_path / "split") == _log(tmp_path / "straight")
    a = load_state(tmp_path / "straight" / "state.pkl").es.mean
    b = load_state(tmp_path / "split" / "state.pkl").es.mean
    assert np.array_equal(a, b)


@pytest.mark.parametrize("batch", [1, 4])
def test_sigkill_mid_run_then_resume_matches(tmp_path, batch):
    evaluator = FakeEvaluator()
    run_evolution(fake_config(batch_members=batch), tmp_path / "straight", evaluator=evaluator,
                  backend=InProcessBackend(evaluator))
    # λ = 6 in groups of 4 and 2 (and the search mean alone) when batched
    assert set(evaluator.group_sizes) == ({4, 2, 1} if batch == 4 else {1})
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.fake_evolution", str(out), str(batch)], cwd=ROOT, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        log = out / "log.jsonl"
        if log.exists() and len(log.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len((out / "log.jsonl").read_text().splitlines())
    assert 3 <= finished < 6, "the kill must land mid-run"
    _run(out, fake_config(batch_members=batch))
    assert _log(out) == _log(tmp_path / "straight")


def test_bad_config_is_named(tmp_path):
    path = tmp_path / "evo.yaml"
    path.write_text("stages: [{name: s, tasks: [passkey], generations: 2}]\npopulaton: 4\n")
    with pytest.raises(ValueError, match="unknown field.*populaton"):
        EvolutionConfig.from_yaml(path)
    path.write_text("stages: [{name: s, tasks: [passkey], generations: 2}]\nupdate_every: 40\n")
    with pytest.raises(ValueError, match="update_every = 40"):
        EvolutionConfig.from_yaml(path)


def test_a_pool_smaller_than_the_sample_is_named(tmp_path):
    from dataclasses import replace

    config = replace(fake_config(), episodes_per_task=6, pool_size=8)  # the fake pools hold 6: fine
    _run(tmp_path / "ok", config, max_generations=1)
    with pytest.raises(ValueError, match="task 'a' gives 6 training episodes, fewer than episodes_per_task = 7"):
        _run(tmp_path / "small", replace(config, episodes_per_task=7), max_generations=1)


def test_spec_cmaes_constants():
    """docs/namm-spec.md §10.11: the reference's constants for d = 4172, λ = 32."""
    c = spec_constants(4172, 32)
    assert c["mu_eff"] == pytest.approx(9.17883, rel=1e-5)
    assert c["c1"] == pytest.approx(1.14834e-7, rel=1e-4)
    assert c["cmu"] == pytest.approx(8.36604e-7, rel=1e-4)
    assert c["alpha"] == pytest.approx(1.137262, rel=1e-5)
    assert c["c_sigma"] == pytest.approx(2.67041e-3, rel=1e-4)
    assert c["d_sigma"] == pytest.approx(1.0026704, rel=1e-6)
    assert c["cc"] == pytest.approx(9.5838e-4, rel=1e-4)
    assert c["chi"] == pytest.approx(64.58715, rel=1e-6)
    assert math.isclose(sum(w for w in c["weights"] if w > 0), 1.0)
    assert sum(w for w in c["weights"] if w < 0) == pytest.approx(-c["alpha"])


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("evolve_*.yaml")), ids=lambda p: p.name)
def test_committed_evolution_configs_load_and_their_start_exists(path):
    from namm_suite.namm import load_namm

    config = EvolutionConfig.from_yaml(path)
    assert config.stages and config.population >= 2
    if config.init is not None:  # the search starts from a committed checkpoint that loads
        start = load_namm(ROOT / config.init).hparams
        assert start.kernel in (1, config.kernel)
        assert start.gamma == config.gamma  # members read features under the γ the start was fitted under
