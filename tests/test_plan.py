"""namm run --plan: per task and cell, the episodes done / failed / missing, exactly as namm run would see them."""

from __future__ import annotations

from pathlib import Path

import pytest

import namm_suite.adapters.base as adapters
from namm_suite.cli import main
from namm_suite.plan import format_plan, plan_sweeps
from namm_suite.results import append_row, read_rows
from namm_suite.runner import SweepConfig, run_sweep
from namm_suite.sweep_file import SweepRun

from .fake_sweep import FakeAdapter

CONFIG = {"tasks": ["toy_echo"], "policies": ["full", "h2o"], "cache_sizes": [4, 8], "seeds": [0, 1], "limit": 3}
CELLS = ["full", "h2o@4", "h2o@8"]  # 2 seeds x 3 episodes each


@pytest.fixture(autouse=True)
def fake_adapter(monkeypatch):
    monkeypatch.setattr(adapters, "create_adapter", lambda name, model, **placement: FakeAdapter())


def counts(config: SweepConfig, out: Path) -> dict[str, tuple[int, int, int]]:
    """``cell -> (done, failed, missing)`` of the plan of ``config`` against ``out``."""
    (plan,), _ = plan_sweeps([SweepRun(config, out)])
    assert {cell.task for cell in plan.cells} == {"toy_echo"}
    return {cell.cell: (cell.done, cell.failed, cell.missing) for cell in plan.cells}


def test_empty_file_all_missing_and_nothing_written(tmp_path):
    out = tmp_path / "r.jsonl"
    assert counts(SweepConfig(**CONFIG), out) == dict.fromkeys(CELLS, (0, 0, 6))
    assert list(tmp_path.iterdir()) == []  # no results file, lock or probe file


def test_after_a_run_all_done_and_the_file_untouched(tmp_path):
    out = tmp_path / "r.jsonl"
    run_sweep(SweepConfig(**CONFIG), out, adapter=FakeAdapter())
    before = out.read_bytes()
    assert counts(SweepConfig(**CONFIG), out) == dict.fromkeys(CELLS, (6, 0, 0))
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]


def test_changed_option_or_new_seed_is_missing(tmp_path):
    out = tmp_path / "r.jsonl"
    run_sweep(SweepConfig(**CONFIG), out, adapter=FakeAdapter())
    changed = SweepConfig(**CONFIG, policy_options={"h2o": {"recent_ratio": 0.25}})
    assert counts(changed, out) == {"full": (6, 0, 0), "h2o@4": (0, 0, 6), "h2o@8": (0, 0, 6)}
    more = SweepConfig(**{**CONFIG, "seeds": [0, 1, 2], "cache_sizes": [8]})
    assert counts(more, out) == {"full": (6, 0, 3), "h2o@8": (6, 0, 3)}
    # what the plan calls missing is what namm run then writes
    assert run_sweep(changed, out, adapter=FakeAdapter()).written == 12


def test_failed_episodes_are_counted_apart(tmp_path):
    out = tmp_path / "r.jsonl"
    run_sweep(SweepConfig(**CONFIG), out, adapter=FakeAdapter())
    row = next(row for row in read_rows(out) if row["cache_size"] == 4)
    append_row(out, {**row, "status": "error", "error": "boom"})  # the newest row of that key failed
    assert counts(SweepConfig(**CONFIG), out)["h2o@4"] == (5, 1, 0)
    plans, latest = plan_sweeps([SweepRun(SweepConfig(**CONFIG), out)])
    assert "namm run would run 0 (1 with --retry-errors)" in format_plan(plans, latest)
    assert "namm run would run 1;" in format_plan(plans, latest, retry_errors=True)


def test_cli_plan_of_a_sweep_file_and_of_flags(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("grid.yaml").write_text("tasks: toy_echo\nlimit: 2\nseeds: [0, 1]\ncache_sizes: [4]\n"
                                 "protocols: [scheduled, context]\npolicies: [full, h2o]\nout: a.jsonl\n")
    assert main(["run", "grid.yaml", "--plan"]) == 0
    text = capsys.readouterr().out
    assert "a.jsonl: language/smollm2-135m, context protocol, evict schedule, length 1024, seeds 0,1" in text
    assert "a.jsonl: 16 episodes planned: 0 done, 0 failed, 16 missing; namm run would run 16;" in text
    assert not Path("a.jsonl").exists()
    assert main(["run", "grid.yaml"]) == 0
    capsys.readouterr()
    append_row(Path("a.jsonl"), {"key": "elsewhere", "status": "ok"})  # a row of another sweep
    flags = ["run", "--task", "toy_echo", "--policy", "full,h2o", "--cache-size", "4", "--seed", "0,1",
             "--limit", "2", "--out", "a.jsonl", "--plan"]
    assert main(flags) == 0
    text = capsys.readouterr().out
    assert "a.jsonl: 8 episodes planned: 8 done, 0 failed, 0 missing; namm run would run 0; 9 rows" in text
    assert [line.split() for line in text.splitlines() if line.startswith("  toy_echo")] == [
        ["toy_echo", "full", "4", "0", "0"], ["toy_echo", "h2o@4", "4", "0", "0"]]
