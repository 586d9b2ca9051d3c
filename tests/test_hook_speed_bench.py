"""benchmarks/hook_speed.py on a tiny model: the variants it times and its table."""

from __future__ import annotations

import pytest

from benchmarks import hook_speed

from .tiny_models import random_ids, tiny_model


def test_variants_time_plain_full_the_chosen_policies_and_the_namm():
    rows = hook_speed._variants(tiny_model("llama"), random_ids(160), steps=2, policies=["h2o", "tova"])
    assert [r.label for r in rows] == ["plain sdpa", "full", "h2o @25%", "tova @25%", "namm"]
    assert all(r.length == 160 and r.prefill_s > 0 and r.decode_ms > 0 for r in rows)
    text = hook_speed.table(rows)
    assert text.count("\n| 160 |") == len(rows) and "| 160 | full |" in text


def test_unknown_policy_is_refused_by_name(capsys):
    with pytest.raises(SystemExit):
        hook_speed.main(["--policies", "h2o", "nope", "--lengths", "64"])
    assert "--policies: nope are not budgeted policies" in capsys.readouterr().err
