"""scripts/likelihood_table.py: policies compared by the answer's teacher-forced likelihood."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "likelihood_table.py"


def _module():
    spec = importlib.util.spec_from_file_location("likelihood_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(episode: str, label: str, probability: float, held: float) -> dict:
    return {"task": "t", "episode_id": episode, "label": label, "probability": probability,
            "mean_logprob": math.log(probability), "held": held}


def test_table_golden_numbers():
    rows = [_row("a", "full", 0.5, 1.0), _row("b", "full", 0.25, 1.0),
            _row("a", "p", 0.25, 0.2), _row("b", "p", 0.25, 0.3), _row("c", "p", 0.9, 0.3)]  # c: no full row
    line = next(line for line in _module().table(rows).splitlines() if "| p |" in line)
    # shared episodes a, b: mean 0.25 (no spread), ratio 0.25 / 0.375, Δ log p = (log ½ + 0) / 2 ± t₉₅(1)·sd/√2
    delta_ci = 12.706 * math.sqrt(2 * (math.log(0.5) / 2) ** 2) / math.sqrt(2)
    assert line == (f"| t | p | 2 | 0.250 ± 0.000 | {0.25 / 0.375:.3f} | {math.log(0.5) / 2:+.3f} ± {delta_ci:.3f} "
                    "| 25% |")


@pytest.mark.slow
def test_rows_match_reading_alone_and_a_rerun_adds_none(tiny_checkpoint, tmp_path):
    from namm_suite.adapters.language import LanguageAdapter
    from namm_suite.manager import MemoryConfig
    from namm_suite.policies.spec import PolicySpec
    from namm_suite.tasks import TASKS, TaskContext

    out = tmp_path / "rows.jsonl"
    command = [sys.executable, str(SCRIPT), "--out", str(out), "--model", str(tiny_checkpoint), "--tasks",
               "passkey", "--length", "200", "--repeats", "1", "--cache", "30%", "--threads", "1",
               "--policies", "snapkv:kernel=3,label=pooled"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted({r["label"] for r in rows}) == ["full", "pooled"] and len(rows) == 10  # 5 depths x 2
    assert "| passkey | pooled | 5 |" in done.stdout
    adapter = LanguageAdapter.from_pretrained(str(tiny_checkpoint))
    episode = TASKS.get("passkey")().episodes(TaskContext(tokenizer=adapter.tokenizer, length=200, seed=2000,
                                                          limit=None, options={"repeats": 1}))[2]
    alone = adapter.answer_likelihood(episode, PolicySpec.parse("snapkv:kernel=3").build_manager(
        MemoryConfig(update_every=64, budget_fraction=0.3, protocol="query-aware", evict="once")))
    row = next(r for r in rows if r["episode_id"] == episode.episode_id and r["label"] == "pooled")
    assert row["mean_logprob"] == pytest.approx(alone.extra["mean_logprob"], abs=1e-5)
    assert 0.25 < row["held"] < 0.35
    again = subprocess.run(command, capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr
    assert len(out.read_text().splitlines()) == 10
