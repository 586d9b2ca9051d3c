"""PolicySpec: parsing from strings and mappings, the budget rules the policies declare, and sweeps whose
policies are specs (keys of plain names unchanged, variants labelled in rows and reports)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from namm_suite.manager import MemoryConfig
from namm_suite.policies import POLICIES, PolicySpec, default_label, policy_names
from namm_suite.policies.spec import split_specs
from namm_suite.report import aggregate, policy_label
from namm_suite.results import read_rows
from namm_suite.runner import RunSpec, SweepConfig, expand, row_key, run_sweep
from namm_suite.tasks import TASKS

from .fake_sweep import FakeAdapter

CONFIG = {"tasks": ["toy_echo"], "cache_sizes": [4, 8], "seeds": [0], "limit": 2}


def test_parse_string_and_mapping():
    spec = PolicySpec.parse("namm:checkpoint=none,selection=threshold,label=v2")
    assert (spec.name, dict(spec.options), spec.label) == ("namm", {"checkpoint": None, "selection": "threshold"},
                                                           "v2")
    assert PolicySpec.parse("snapkv: window=64 , pooling=avg").options == {"window": 64, "pooling": "avg"}
    mapping = PolicySpec.parse({"name": "snapkv", "kernel": 5, "options": {"window": 16}, "label": "s"})
    assert (dict(mapping.options), mapping.label) == ({"kernel": 5, "window": 16}, "s")
    assert PolicySpec.parse(str(spec)) == spec and str(PolicySpec("h2o")) == "h2o"
    assert mapping.create().window == 16 and mapping.create().kernel == 5


@pytest.mark.parametrize(("value", "message"), [
    ("", "expected a policy name"), ("h2o:recent_ratio", "expected KEY=VALUE"), ({"window": 3}, "needs name"),
    ({"name": "snapkv", "options": [1]}, "expected a mapping"),
])
def test_bad_specs_are_named(value, message):
    with pytest.raises(ValueError, match=message) as error:
        PolicySpec.parse(value, "sweep.yaml: policies[2]")
    assert str(error.value).startswith("sweep.yaml: policies[2]")


def test_each_policy_declares_its_budget_rule():
    rules = {name: POLICIES.get(name).budget_rule for name in POLICIES.names()}
    assert rules.pop("full") == "none" and rules.pop("namm") == "cap"
    assert set(rules.values()) == {"required"}
    assert [name for name in POLICIES.names() if not POLICIES.get(name).holds_memory] == ["full"]
    assert PolicySpec("full").budget_for(64) is None and PolicySpec("namm").budget_for(64) == 64
    assert policy_names("required") == sorted(rules) and policy_names() == POLICIES.names()
    manager = PolicySpec.parse("streaming:sinks=2").build_manager(MemoryConfig(update_every=16, budget=32))
    assert manager.budget == 32 and manager.policy.sinks == 2
    full = PolicySpec("full").build_manager(MemoryConfig(update_every=16, budget=32, chunk_size=8))
    assert full.config.budget is None and full.config.chunk_size == 8  # no budget applies, the schedule does
    share = PolicySpec("namm").build_manager(MemoryConfig(update_every=16, budget_fraction=0.25))
    assert share.config.budget_fraction == 0.25
    with pytest.raises(ValueError, match="multiple of 16"):
        PolicySpec("namm").build_manager(MemoryConfig(update_every=24))


def test_import_loads_no_torch():
    code = "import sys, namm_suite.policies, namm_suite.report; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_plain_names_keep_their_keys_and_specs_set_options():
    config = SweepConfig(**CONFIG, policies=["h2o", "random", {"name": "h2o", "recent_ratio": 0.25, "label": "h2o-r"}])
    task = TASKS.get("toy_echo")()
    plain, random, variant = expand(config)[::2]
    assert plain.options(config, 3) == {} and random.options(config, 3) == {"seed": 3}
    assert variant.options(config, 3) == {"recent_ratio": 0.25}
    # a plain name hashes as it did before specs existed: no label, no spec options enter the key
    assert row_key(config, plain, task, 0, "e") == row_key(config, RunSpec(PolicySpec("h2o"), 4), task, 0, "e")
    assert row_key(config, plain, task, 0, "e") != row_key(config, variant, task, 0, "e")


def test_namm_variants_in_one_sweep(tmp_path):
    config = SweepConfig(**CONFIG, namm_checkpoint=None, policies=[
        "full", "namm", "namm:selection=threshold", {"name": "namm", "label": "capped"}], namm_cap=False)
    assert [(cell.policy, cell.cache_size) for cell in expand(config)] == [
        ("full", None), ("namm", None), ("namm", None), ("namm", None)]
    with pytest.raises(ValueError, match="share the label 'namm \\[θ=0\\]'"):
        SweepConfig(**CONFIG, policies=["namm", "namm:selection=kappa"], namm_checkpoint=None)
    out = tmp_path / "r.jsonl"
    run_sweep(config, out, adapter=FakeAdapter())
    rows = read_rows(out)
    assert len(rows) == 2 * 4 and len({row["key"] for row in rows}) == 8  # a label makes its own cell
    assert {policy_label(row) for row in rows} == {"full", "namm [θ=0]", "namm-threshold [θ=0]", "capped"}
    assert "label" not in rows[0] and sum("label" in row for row in rows) == 2
    assert set(aggregate(rows)["toy_echo"]) == {("full", None), ("namm [θ=0]", None),
                                                ("namm-threshold [θ=0]", None), ("capped", None)}


def test_default_label_matches_the_report():
    assert default_label("h2o", {"recent_ratio": 0.5}) == "h2o"
    assert default_label("namm", {"checkpoint": "checkpoints/a/b", "selection": "threshold"}) == "namm-threshold [b]"
    assert policy_label({"policy": "namm", "policy_options": {"checkpoint": None, "selection": "kappa"}}) == "namm [θ=0]"


def test_command_line_lists_split_between_specs():
    assert split_specs("full, h2o,namm:checkpoint=none,selection=threshold,label=t,snapkv:window=8") == [
        "full", "h2o", "namm:checkpoint=none,selection=threshold,label=t", "snapkv:window=8"]
    assert split_specs("selection=threshold,h2o") == ["selection=threshold", "h2o"]  # parse then names it
    with pytest.raises(ValueError, match="options follow the policy name and a colon"):
        PolicySpec.parse("selection=threshold")


def test_namm_run_takes_specs(tmp_path, monkeypatch):
    import namm_suite.adapters.base as adapters
    from namm_suite.cli import main

    monkeypatch.setattr(adapters, "create_adapter", lambda name, model, **placement: FakeAdapter())
    out = tmp_path / "r.jsonl"
    assert main(["run", "--task", "toy_echo", "--limit", "1", "--namm-checkpoint", "none", "--out", str(out),
                 "--policy", "full,namm:selection=threshold,label=t,h2o:recent_ratio=0.25", "--cache-size", "8"]) == 0
    rows = read_rows(out)
    assert [(row["policy"], row.get("label"), row["policy_options"]) for row in rows] == [
        ("full", None, {}), ("namm", "t", {"checkpoint": None, "selection": "threshold"}),
        ("h2o", None, {"recent_ratio": 0.25})]
