"""The sweep runner and its results file: resume without repeats, crash safety, reports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from namm_suite.cli import main
from namm_suite.report import aggregate, write_report
from namm_suite.results import ResultsError, append_row, read_rows
from namm_suite.runner import SweepConfig, expand, run_sweep

from .fake_sweep import FakeAdapter

ROOT = Path(__file__).resolve().parent.parent
CONFIG = {"tasks": ["toy_echo"], "policies": ["full", "h2o", "streaming"], "cache_sizes": [4, 8], "seeds": [0, 1],
          "limit": 3}
EXPECTED_ROWS = 2 * 3 * (1 + 2 + 2)  # seeds × episodes × (full + h2o@2 + streaming@2)


def test_expand_cells():
    specs = expand(SweepConfig(**{**CONFIG, "policies": ["full", "namm", "h2o"]}, namm_cap=True))
    assert [(s.policy, s.cache_size) for s in specs] == [
        ("full", None), ("namm", None), ("namm", 4), ("namm", 8), ("h2o", 4), ("h2o", 8)]


def test_a_sweep_without_a_model_runs_its_adapters_default():
    models = {adapter: SweepConfig(**CONFIG, adapter=adapter).model
              for adapter in ("language", "video", "decision-window", "my-own")}
    assert models == {"language": "smollm2-135m", "video": "tiny-video-llm", "decision-window": "dt-hopper",
                      "my-own": "smollm2-135m"}
    assert SweepConfig(**CONFIG, adapter="video", model="path/to/mine").model == "path/to/mine"


def test_sweep_rows_resume_and_provenance(tmp_path):
    out = tmp_path / "r.jsonl"
    assert run_sweep(SweepConfig(**CONFIG), out, adapter=FakeAdapter()).written == EXPECTED_ROWS
    assert run_sweep(SweepConfig(**CONFIG), out, adapter=FakeAdapter()).written == 0  # nothing repeated
    rows = read_rows(out)
    assert len(rows) == EXPECTED_ROWS and len({r["key"] for r in rows}) == EXPECTED_ROWS
    row = rows[0]
    assert row["provenance"]["git_commit"] and "torch" in row["provenance"]["versions"]
    assert row["config"]["limit"] == 3 and row["status"] == "ok"
    scores = {(r["policy"], r["cache_size"]): r["score"] for r in rows}
    assert scores[("h2o", 4)] == 0.0 and scores[("h2o", 8)] == 1.0 and scores[("full", None)] == 1.0
    # a larger sweep only runs what is new
    assert run_sweep(SweepConfig(**{**CONFIG, "seeds": [0, 1, 2]}), out, adapter=FakeAdapter()).written == 15


def test_sigkill_midway_then_rerun_loses_and_repeats_nothing(tmp_path):
    out = tmp_path / "killed.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.fake_sweep", str(out)], cwd=ROOT, env=env,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or len(out.read_bytes().splitlines()) < 7):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = read_rows(out)
    assert 7 <= len(before) < EXPECTED_ROWS
    run_sweep(SweepConfig(**CONFIG), out, adapter=FakeAdapter())
    after = read_rows(out)
    assert len(after) == EXPECTED_ROWS and len({r["key"] for r in after}) == EXPECTED_ROWS
    assert after[: len(before)] == before  # finished rows untouched


def test_torn_last_line_is_cut_and_corrupt_middle_line_is_named(tmp_path):
    out = tmp_path / "r.jsonl"
    append_row(out, {"a": 1})
    with open(out, "ab") as handle:
        handle.write(b'{"a": 2, "trunc')
    assert read_rows(out) == [{"a": 1}]
    append_row(out, {"a": 3})
    assert read_rows(out) == [{"a": 1}, {"a": 3}]
    out.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(ResultsError, match=r"r.jsonl:2: corrupt"):
        read_rows(out)


def test_bad_sweep_inputs_are_named():
    with pytest.raises(ValueError, match="cache size must be > 0"):
        SweepConfig(**{**CONFIG, "cache_sizes": [0]})
    with pytest.raises(KeyError, match="unknown task 'toy_ech'.*Did you mean 'toy_echo'"):
        SweepConfig(**{**CONFIG, "tasks": ["toy_ech"]})
    with pytest.raises(ValueError, match="need at least one --cache-size"):
        SweepConfig(**{**CONFIG, "cache_sizes": []})


def test_unwritable_results_path_fails_before_work(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the results folder should be")
    adapter = FakeAdapter()
    adapter.run = None  # any episode run would fail loudly
    with pytest.raises(ResultsError, match="not_a_folder/r.jsonl cannot be written"):
        run_sweep(SweepConfig(**CONFIG), blocker / "r.jsonl", adapter=adapter)


def test_read_only_results_folder_fails_before_work(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        with pytest.raises(ResultsError, match="cannot be written"):
            run_sweep(SweepConfig(**CONFIG), folder / "r.jsonl", adapter=FakeAdapter())
    finally:
        folder.chmod(0o700)


def test_report_table_and_figure(tmp_path):
    out = tmp_path / "r.jsonl"
    run_sweep(SweepConfig(**CONFIG), out, adapter=FakeAdapter())
    cells = aggregate(read_rows(out))["toy_echo"]
    assert cells[("h2o", 4)].mean == 0.0 and cells[("h2o", 8)].mean == 1.0
    assert cells[("full", None)].stderr == 0.0 and len(cells[("full", None)].scores) == 6
    written = write_report([out], tmp_path / "report.md").paths
    text = (tmp_path / "report.md").read_text()
    assert "| h2o | 0.000 ± 0.000, 0% of full (kept 4, n=6) | 1.000 ± 0.000, 100% of full (kept 8, n=6) |  |" in text
    assert (tmp_path / "report.png").stat().st_size > 5000 and len(written) == 2


def test_stderr_golden():
    from namm_suite.report import Cell

    cell = Cell([1.0, 0.0, 1.0, 1.0], [1, 1, 1, 1])
    assert cell.mean == 0.75
    assert cell.stderr == pytest.approx(0.25)  # sd = 0.5 (ddof 1), / sqrt(4)
    assert json.dumps(cell.mean) == "0.75"


def test_ci95_golden_and_report_spread(tmp_path):
    from namm_suite.report import Cell, t95

    cell = Cell([1.0, 0.0, 1.0, 1.0], [1, 1, 1, 1])
    assert cell.ci95 == pytest.approx(3.182 * 0.25)  # t(0.975, df=3) × standard error
    assert t95(49) == 2.021 and t95(200) == 1.96 and t95(0) == 0.0
    assert Cell([0.5], [1]).ci95 == 0.0
    out = tmp_path / "r.jsonl"
    run_sweep(SweepConfig(**CONFIG), out, adapter=FakeAdapter())
    write_report([out], tmp_path / "ci.md", spread="ci95")
    assert "95% confidence interval" in (tmp_path / "ci.md").read_text()
    with pytest.raises(ValueError, match="spread"):
        write_report([out], tmp_path / "bad.md", spread="iqr")


def test_report_window_rows_and_notes(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    run_sweep(SweepConfig(**CONFIG), out, adapter=FakeAdapter())
    full = next(row for row in read_rows(out) if row["policy"] == "full")
    window = {**full, "key": "window", "score": 0.5, "extra": {"protocol": "window", "context_steps": 20}}
    append_row(out, window)  # the decision-window adapter's row: policy full, no cache
    notes = tmp_path / "notes.md"
    notes.write_text("## Reading\n\nby hand\n")
    assert main(["report", str(out), "--out", str(tmp_path / "report.md"), "--notes", str(notes)]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "| window-20 |  |  | 0.500 ± 0.000, 50% of full (kept 16, n=1) |" in text
    assert "| full |  |  | 1.000 ± 0.000, 100% of full (kept 16, n=6) |" in text  # not merged with window-20
    assert text.endswith("\n## Reading\n\nby hand\n")
    assert main(["report", str(out), "--out", str(tmp_path / "x.md"), "--notes", str(tmp_path / "no.md")]) == 2
    assert "notes file not found" in capsys.readouterr().err and not (tmp_path / "x.md").exists()
