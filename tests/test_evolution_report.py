"""The evolution report's summary table lists every evaluation of the search mean."""

from namm_suite.evolution.report import summary_table


def _row(generation: int, **extra) -> dict:
    return {"generation": generation, "stage": 1, "fitness_best": 0.9, "fitness_mean": 0.8, "fitness_std": 0.1,
            "kept_fraction": 0.5, **extra}


def test_summary_table_lists_the_stage_start_and_every_evaluation():
    rows = [_row(1, stage_start_fitness=0.75), _row(2), _row(3, eval_fitness=0.85)]
    lines = summary_table(rows).splitlines()
    assert lines[2:] == ["| 0 (stage start) | 1 | | | | 0.750 |",
                         "| 3 | 1 | 0.900 | 0.800 ± 0.100 | 0.500 | 0.850 |"]


def test_summary_table_without_evaluations_has_only_its_header():
    assert len(summary_table([_row(1), _row(2)]).splitlines()) == 2
