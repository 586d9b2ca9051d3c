"""namm run sweep.yaml: a whole grid (runs × protocols × tasks × policy variants × sizes × seeds) from YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

import namm_suite.adapters.base as adapters
from namm_suite.cli import main
from namm_suite.report import policy_label
from namm_suite.results import read_rows
from namm_suite.runner import SweepConfig, run_sweep
from namm_suite.sweep_file import load_sweep_file

from .fake_sweep import FakeAdapter

ROOT = Path(__file__).resolve().parent.parent
GRID = """
tasks: toy_echo
limit: 2
seeds: [0, 1]
cache_sizes: [4, 8]
namm_checkpoint: none
protocols: [scheduled, context]
policies:
  - full
  - h2o
  - namm
  - "namm:selection=threshold"
  - {name: namm, label: capped, options: {selection: threshold}}
runs:
  - {out: a.jsonl}
  - {out: b.jsonl, seeds: 2, policies: [streaming]}
"""


@pytest.fixture
def fake_adapter(monkeypatch):
    made = []

    def create(name, model, **placement):
        made.append((name, model))
        return FakeAdapter()

    monkeypatch.setattr(adapters, "create_adapter", create)
    return made


def test_grid_runs_resumes_and_matches_separate_sweeps(tmp_path, monkeypatch, fake_adapter, capsys):
    monkeypatch.chdir(tmp_path)
    Path("grid.yaml").write_text(GRID)
    assert main(["run", "grid.yaml"]) == 0
    assert fake_adapter == [("language", "smollm2-135m")]  # one adapter serves all four sweeps
    a, b = read_rows(Path("a.jsonl")), read_rows(Path("b.jsonl"))
    # a: 2 protocols x 2 seeds x 2 episodes x (full + h2o@2 + 3 namm variants); b: 2 x 1 x 2 x streaming@2
    assert len(a) == 2 * 2 * 2 * 6 and len(b) == 2 * 1 * 2 * 2
    assert {row["protocol"] for row in a} == {"scheduled", "context"} and {row["seed"] for row in b} == {2}
    assert {policy_label(row) for row in a} == {"full", "h2o", "namm [θ=0]", "namm-threshold [θ=0]", "capped"}
    assert "48 new result rows in a.jsonl" in capsys.readouterr().out
    assert main(["run", "grid.yaml"]) == 0 and len(read_rows(Path("a.jsonl"))) == 48  # nothing repeated
    # the same keys as the separate `namm run` calls a shell loop would make
    loop = tmp_path / "loop.jsonl"
    for protocol in ("scheduled", "context"):
        for policies in (["full", "h2o"], ["namm"]):
            run_sweep(SweepConfig(tasks=["toy_echo"], policies=policies, cache_sizes=[4, 8], seeds=[0, 1], limit=2,
                                  protocol=protocol), loop, adapter=FakeAdapter())
        run_sweep(SweepConfig(tasks=["toy_echo"], policies=["namm"], seeds=[0, 1], limit=2, protocol=protocol,
                              selection="threshold"), loop, adapter=FakeAdapter())
    assert {row["key"] for row in read_rows(loop)} < {row["key"] for row in a}


def test_out_option_overrides_the_file(tmp_path, fake_adapter):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("tasks: [toy_echo]\npolicies: [full]\nlimit: 1\nout: never.jsonl\n")
    assert main(["run", str(sweep), "--out", str(tmp_path / "here.jsonl")]) == 0
    assert len(read_rows(tmp_path / "here.jsonl")) == 1 and not (tmp_path / "never.jsonl").exists()


@pytest.mark.parametrize(("text", "message"), [
    ("tasks: [toy_echo]\npolicies: [full]\npolcies: [h2o]\nout: r.jsonl",
     "unknown field 'polcies' (did you mean 'policies'?)"),
    ("tasks: [toy_echo]\npolicies: [full]\nout: r.jsonl\nruns: [{}, {policies: [h2x]}]",
     "runs[1]: unknown memory policy 'h2x'"),
    ("tasks: [toy_echo]\npolicies: [full]\nprotocol: context\nprotocols: [scheduled]\nout: r.jsonl",
     "protocol or protocols"),
    ("tasks: [toy_echo]\npolicies: [full]", "no results file"),
    ("tasks: [toy_echo]\nout: r.jsonl", "missing field(s) policies"),
    ("tasks: [toy_echo]\npolicies: [h2o]\ncache_sizes: [0]\nout: r.jsonl", "cache size must be > 0"),
    ("- just a list", "expected a mapping"),
    ("tasks: [toy_echo\n", "cannot read the sweep file"),
])
def test_bad_sweep_files_name_the_file_and_field(tmp_path, text, message, capsys):
    sweep = tmp_path / "bad.yaml"
    sweep.write_text(text)
    with pytest.raises(ValueError, match=r"bad\.yaml") as error:
        load_sweep_file(sweep)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert main(["run", str(sweep)]) == 2 and message in capsys.readouterr().err


def test_file_and_task_flags_do_not_mix(tmp_path, capsys):
    assert main(["run", str(tmp_path / "s.yaml"), "--task", "toy_echo"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["run", "--task", "toy_echo", "--out", str(tmp_path / "r.jsonl")]) == 2
    assert "--task, --policy and --out" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("sweep_*.yaml")), ids=lambda p: p.name)
def test_shipped_sweep_files_load(path):
    sweeps = load_sweep_file(path)
    assert sweeps and all(sweep.out.suffix == ".jsonl" for sweep in sweeps)
    labels = [spec.title() for sweep in sweeps for spec in sweep.config.specs]
    assert any(label.startswith("namm") for label in labels)


def test_missing_checkpoint_names_the_file_and_run(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("tasks: [toy_echo]\nout: r.jsonl\nruns: [{policies: [full]}, {policies: ['namm:checkpoint=nope']}]")
    with pytest.raises(ValueError, match=r"s\.yaml: runs\[1\]: .*nope"):
        load_sweep_file(sweep)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sweep_language.yaml", "sweep_video.yaml", "sweep_decision.yaml"])
def test_committed_results_are_planned_whole(name, monkeypatch):
    """Each sweep file behind committed results plans every committed row and nothing more (namm run --plan:
    0 missing), so its `namm run` recomputes nothing and a change to the resume key cannot orphan them."""
    from namm_suite.plan import plan_sweeps

    monkeypatch.chdir(ROOT)
    plans, latest = plan_sweeps(load_sweep_file(Path("configs") / name))
    for out, rows in latest.items():
        mine = [plan for plan in plans if plan.out == out]
        assert [sum(plan.total(count) for plan in mine) for count in ("done", "failed", "missing")] == [
            len(rows), 0, 0], out
        assert set(rows) == set().union(*(plan.keys for plan in mine)), out


def test_readme_regenerates_every_committed_results_file():
    """Every results/*.jsonl of `namm run` rows is in the README's "Regenerating the committed results" table,
    beside a sweep file that exists and writes it."""
    import json
    import re

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text[text.index("**Regenerating the committed results.**"):].split("\n\n")[1]
    pairs = re.findall(r"\| `results/[^`]+` \| `(configs/[^`]+)` \| `([^`]+)`", table)
    demo_rows = ROOT / "results" / "transfer_runs"  # `make demo` writes and reports these itself
    for path in sorted(p for p in (ROOT / "results").rglob("*.jsonl") if demo_rows not in p.parents):
        with path.open(encoding="utf-8") as handle:
            if "key" not in json.loads(handle.readline()):
                continue  # not `namm run` rows (a training log)
        name = path.relative_to(ROOT).as_posix()
        configs = [config for config, report in pairs if name in report.split()]
        assert configs, f"{name} is in no README report command"
        assert name in (ROOT / configs[0]).read_text(encoding="utf-8"), f"{configs[0]} does not write {name}"
