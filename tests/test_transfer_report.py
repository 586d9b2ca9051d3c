"""The transfer table: golden numbers from hand-made rows, labels, the figure, and the demo profiles."""

from __future__ import annotations

from namm_suite.demo import PROFILES, label_for
from namm_suite.transfer_report import markdown, plot, summarise


def row(task, policy, size, score, kept, adapter="language", **options):
    return {"task": task, "policy": policy, "cache_size": size, "score": score, "mean_kept": kept,
            "status": "ok", "metric": "accuracy", "adapter": adapter, "policy_options": options}


def test_percent_of_full_is_per_task_then_averaged_and_zero_full_tasks_are_left_out():
    rows = [
        row("a", "full", None, 1.0, 100), row("a", "full", None, 1.0, 100),
        row("b", "full", None, 0.5, 200),
        row("a", "h2o", 32, 0.5, 30), row("a", "h2o", 32, 0.0, 34),  # mean 0.25 -> 25% of 1.0
        row("b", "h2o", 32, 0.5, 40),  # 100% of 0.5
        row("c", "full", None, 0.0, 50), row("c", "h2o", 32, 1.0, 10),  # full fails: not in the mean
        row("a", "h2o", 32, 1.0, 30) | {"status": "error"},  # errors never count
    ]
    result = summarise("language", rows, [32])
    cell = result.cells[("h2o", 32)]
    assert cell.percent == 62.5 and cell.tasks == 2
    assert cell.kept == (32 + 40) / 2
    assert result.full_scores == {"a": 1.0, "b": 0.5, "c": 0.0}
    table = markdown([result])
    assert "| h2o |  | 62% (36) |" in table or "| h2o |  | 63% (36) |" in table
    assert "full cache scores 0: c" in table


def test_namm_rows_are_labelled_with_rule_and_checkpoint_and_reference_protocol_gets_its_label():
    decision = next(m for m in PROFILES["default"] if m.reference_adapter)
    label = label_for(decision)
    assert label(row("hopper", "full", None, 1, 1, adapter=decision.reference_adapter)) == decision.reference_label
    assert label(row("hopper", "full", None, 1, 1, adapter=decision.adapter)) == "full"
    assert label(row("hopper", "namm", None, 1, 1, checkpoint="x/namm_smollm2")) == "namm [namm_smollm2]"


def test_plot_writes_one_panel_per_modality(tmp_path):
    rows = [row("a", "full", None, 1.0, 100), row("a", "namm", None, 0.5, 20, checkpoint="ck"),
            row("a", "namm", 32, 0.5, 30, checkpoint="ck"), row("a", "h2o", 32, 0.25, 30)]
    results = [summarise(name, rows, [32]) for name in ("language", "video")]
    plot(results, tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 1000


def test_profiles_cover_every_modality_with_budgets_below_their_length():
    for name, modalities in PROFILES.items():
        assert [m.name for m in modalities] == ["language", "video", "decision"], name
        for m in modalities:
            assert m.budgets and all(0 < b < m.length for b in m.budgets), (name, m.name)
