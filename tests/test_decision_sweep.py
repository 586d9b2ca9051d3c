"""End to end: `namm run` rows for the decision adapters on a tiny saved DT, and the decision report."""

from __future__ import annotations

from pathlib import Path

import pytest

from namm_suite.cli import main
from namm_suite.results import read_rows
from namm_suite.runner import SweepConfig, run_sweep
from namm_suite.tasks.decision import normalised_score

from .single_thread import one_torch_thread  # noqa: F401  (autouse)
from .test_decision_adapter import meta, tiny_dt

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dt_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_dt")
    _, hooked = tiny_dt()
    hooked.save_pretrained(path)
    meta().save(path)
    return path


@pytest.mark.slow
def test_sweep_rows_and_report(dt_checkpoint, tmp_path):
    out, window_out = tmp_path / "dt.jsonl", tmp_path / "dt_window.jsonl"
    config = SweepConfig(tasks=["hopper"], policies=["full", "streaming", "namm"], cache_sizes=[24],
                         adapter="decision", model=str(dt_checkpoint), seeds=[0, 1], length=90, update_every=16,
                         namm_checkpoint=str(ROOT / "checkpoints" / "namm_smollm2"))
    assert run_sweep(config, out).written == 6
    rows = read_rows(out)
    assert {r["status"] for r in rows} == {"ok"}, [r.get("error") for r in rows]
    for row in rows:
        assert row["score"] == pytest.approx(normalised_score("hopper", row["prediction"]))
        assert row["extra"]["protocol"] == "cache" and 1 <= row["extra"]["steps"] <= 30
    assert run_sweep(config, out).written == 0  # resumable: nothing left to do
    window = SweepConfig(tasks=["hopper"], policies=["full"], adapter="decision-window", model=str(dt_checkpoint),
                         seeds=[0], length=90, update_every=16)
    assert run_sweep(window, window_out).written == 1
    report, notes = tmp_path / "dt.md", tmp_path / "notes.md"
    notes.write_text("## Reading\n\nwritten by hand\n")
    assert main(["report", str(out), str(window_out), "--out", str(report), "--notes", str(notes)]) == 0
    text = report.read_text()
    assert "| window-5 |" in text and "| streaming |" in text and "namm [namm_smollm2]" in text
    assert text.endswith("## Reading\n\nwritten by hand\n") and (tmp_path / "dt.png").is_file()
