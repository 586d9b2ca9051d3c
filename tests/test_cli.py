"""The `namm` command's listing and its errors on bad input (fast: no model is loaded)."""

from __future__ import annotations

import pytest

from namm_suite.cli import main


def test_policies_lists_all_eight(capsys):
    assert main(["policies"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == ["full", "h2o", "keynorm", "namm", "random", "snapkv", "streaming", "tova"]


def test_unknown_policy_is_named_with_valid_ones(capsys, tmp_path):
    prompt = tmp_path / "p.txt"
    prompt.write_text("hi")
    assert main(["generate", "--policy", "h2", "--cache-size", "8", "--prompt-file", str(prompt)]) == 2
    err = capsys.readouterr().err
    assert "unknown memory policy 'h2'" in err and "Valid names: full, h2o" in err


@pytest.mark.parametrize("size", ["0", "-5", "abc"])
def test_bad_cache_size_is_refused(size, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--cache-size", size, "--prompt", "x"])
    assert exit_info.value.code == 2
    assert "--cache-size" in capsys.readouterr().err


def test_missing_prompt_file_is_named(tmp_path, capsys):
    assert main(["generate", "--prompt-file", str(tmp_path / "missing.txt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("namm generate: error: prompt file not found: ") and "missing.txt" in err


def test_budgeted_policy_without_cache_size_is_refused(capsys):
    assert main(["generate", "--policy", "h2o", "--prompt", "x"]) == 2
    assert "needs a cache budget" in capsys.readouterr().err


def test_tasks_lists_synthetic_and_loader_tasks(capsys):
    assert main(["tasks"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert {"passkey", "multikey_needle", "kv_retrieval", "variable_tracking", "longbench_hotpotqa"} <= set(lines)
    assert "language" in lines["passkey"]


def test_report_on_missing_results_is_named(capsys, tmp_path):
    assert main(["report", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "r.md")]) == 2
    assert "results file not found" in capsys.readouterr().err
