"""Determinism: the same sweep with the same seed writes byte-identical result lines on CPU (timings and the
provenance stamp excluded), whether it runs straight through or resumes after losing its tail.

The model-backed sweep runs a tiny random Llama (with SmolLM2's tokenizer) on passkey prompts through the
real language adapter and every randomised or attention-driven policy (random, H2O, the NAMM).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from namm_suite.runner import SweepConfig, run_sweep

from .fake_sweep import FakeAdapter
from .single_thread import one_torch_thread  # noqa: F401  (autouse)

VOLATILE = ("wall_seconds", "provenance")


def stable_lines(path: Path) -> list[bytes]:
    """Each result line with its timings and provenance removed, re-serialised as the store writes it."""
    out = []
    for line in path.read_bytes().splitlines():
        row = json.loads(line)
        for key in VOLATILE:
            row.pop(key, None)
        for key in [k for k in row if k.endswith("_seconds")]:  # prefill/decode/update timings
            row.pop(key)
        if isinstance(row.get("extra"), dict):
            row["extra"] = {k: v for k, v in row["extra"].items() if not k.endswith("_seconds")}
        out.append(json.dumps(row, sort_keys=True, default=str).encode())
    return out


def _resume_after_losing_tail(first: Path, second: Path, keep: int, run) -> None:
    """``second`` = the first ``keep`` lines of ``first``, then the sweep resumed into it."""
    second.write_bytes(b"".join(line + b"\n" for line in first.read_bytes().splitlines()[:keep]))
    assert run(second) > 0


def test_fake_sweep_lines_are_identical_across_runs_and_a_resume(tmp_path):
    config = {"tasks": ["toy_echo"], "policies": ["full", "h2o", "random"], "cache_sizes": [4, 8],
              "seeds": [0, 1], "limit": 3}

    def run(out: Path) -> int:
        return run_sweep(SweepConfig(**config), out, adapter=FakeAdapter()).written

    run(tmp_path / "a.jsonl")
    run(tmp_path / "b.jsonl")
    _resume_after_losing_tail(tmp_path / "a.jsonl", tmp_path / "c.jsonl", 7, run)
    a = stable_lines(tmp_path / "a.jsonl")
    assert len(a) == 2 * 3 * 5
    assert a == stable_lines(tmp_path / "b.jsonl") == stable_lines(tmp_path / "c.jsonl")


@pytest.mark.slow
def test_model_sweep_lines_are_identical_across_runs_and_a_resume(tmp_path, tiny_checkpoint):
    from namm_suite.adapters.base import create_adapter

    config = {"tasks": ["passkey"], "policies": ["full", "random", "h2o", "namm"], "cache_sizes": [48],
              "seeds": [0, 1], "limit": 2, "length": 192, "update_every": 32, "model": str(tiny_checkpoint),
              "namm_checkpoint": None}

    def run(out: Path) -> int:  # a fresh adapter (model load) per run: nothing carried over in memory
        return run_sweep(SweepConfig(**config), out, adapter=create_adapter("language", str(tiny_checkpoint))).written

    run(tmp_path / "a.jsonl")
    run(tmp_path / "b.jsonl")
    _resume_after_losing_tail(tmp_path / "a.jsonl", tmp_path / "c.jsonl", 7, run)
    a = stable_lines(tmp_path / "a.jsonl")
    rows = [json.loads(line) for line in a]
    assert len(rows) == 2 * 2 * 4 and all(r["status"] == "ok" for r in rows)
    assert len({r["prediction"] for r in rows}) > 1  # the random model does answer, differently per cell
    assert a == stable_lines(tmp_path / "b.jsonl") == stable_lines(tmp_path / "c.jsonl")
