"""`namm demo --quick` end to end: every modality, every policy, the table and figure, and resume."""

from __future__ import annotations

import pytest

from namm_suite.cli import main
from namm_suite.policies import POLICIES
from namm_suite.results import read_rows

pytestmark = pytest.mark.slow


def test_demo_quick_writes_the_transfer_table_and_a_rerun_skips_finished_work(tmp_path):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "transfer_quick.md").read_text()
    assert (tmp_path / "transfer_quick.png").stat().st_size > 1000
    header = table.splitlines()[2]
    for column in ("language own", "language 128", "video own", "video 32", "decision own", "decision 60"):
        assert column in header
    for name in POLICIES.names():
        assert any(line.startswith(f"| {name}") for line in table.splitlines()), name
    assert "| dt window (K steps) |" in table
    runs = sorted((tmp_path / "transfer_runs_quick").glob("*.jsonl"))
    rows = {path.name: read_rows(path) for path in runs}
    assert all(r["status"] == "ok" for rs in rows.values() for r in rs), [
        r.get("error") for rs in rows.values() for r in rs if r["status"] != "ok"]
    before = {name: len(rs) for name, rs in rows.items()}
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0  # everything done: nothing re-run
    assert {p.name: len(read_rows(p)) for p in runs} == before
    assert (tmp_path / "transfer_quick.md").read_text() == table  # same rows, same table
