"""benchmarks/fitness_throughput.py on a tiny model: every path evaluates the same prompts under the same
members, and the report sets each path's episodes per CPU-second against today's."""

from __future__ import annotations

import argparse

import pytest

from benchmarks import fitness_throughput as bench


@pytest.mark.slow
def test_every_path_runs_the_same_episodes_and_reports_ratios(tiny_checkpoint):
    rows = bench.measure(str(tiny_checkpoint), per_task=1, count=2, length=160, update_every=32)
    assert [r.label for r in rows] == [p[0] for p in bench.PATHS]
    assert {r.episodes for r in rows} == {2 * len(bench.TASKS)}  # 2 members x 1 prompt per task
    assert all(r.cpu_seconds > 0 and r.per_cpu_second > 0 for r in rows)
    assert all(0.0 < r.mean_score <= 1.0 for r in rows[1:])  # answer likelihoods (today's path: 0/1 metric)
    args = argparse.Namespace(per_task=1, members=2, length=160, update_every=32, model="tiny")
    text = bench.report(rows, args)
    base = rows[0].per_cpu_second
    for r in rows:
        assert f"| {r.label} | {r.episodes} |" in text
        assert f"| {r.per_cpu_second / base:.2f} |" in text
    assert "Best new path:" in text
