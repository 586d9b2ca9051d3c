"""Fitness curve and summary of an evolution run, from its ``log.jsonl`` (generated, never hand-edited)."""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import save_figure_atomic
from ..results import read_rows, write_text_atomic

LOG_FIELDS = ("generation", "stage", "fitness_best", "fitness_mean", "fitness_std", "kept_fraction")


def plot_fitness(rows: list[dict], path: Path) -> None:
    """Best / mean ± std of the population's fitness per generation, the evaluated mean m as points, and
    the population's kept fraction on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gens = [r["generation"] for r in rows]
    mean = [r["fitness_mean"] for r in rows]
    std = [r["fitness_std"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    ax.plot(gens, [r["fitness_best"] for r in rows], label="best member", linewidth=1)
    ax.plot(gens, mean, label="population mean", linewidth=1)
    ax.fill_between(gens, [m - s for m, s in zip(mean, std, strict=True)],
                    [m + s for m, s in zip(mean, std, strict=True)], alpha=0.2)
    evaluated = [(r["generation"], r["eval_fitness"]) for r in rows if "eval_fitness" in r]
    if evaluated:
        ax.plot(*zip(*evaluated, strict=True), "k*", markersize=8, label="search mean m (all pool prompts)")
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness")
    ax.grid(alpha=0.3)
    kept = ax.twinx()
    kept.plot(gens, [r["kept_fraction"] for r in rows], color="grey", linestyle=":", label="kept fraction")
    kept.set_ylabel("population kept fraction (vs full cache)")
    kept.set_ylim(0, 1.05)
    lines, labels = ax.get_legend_handles_labels()
    lines2, labels2 = kept.get_legend_handles_labels()
    ax.legend(lines + lines2, labels + labels2, fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure_atomic(fig, path)


def summary_table(rows: list[dict]) -> str:
    """Markdown rows of every generation where the search mean was evaluated, including the evaluation of
    the mean each stage starts from (listed as the generation before the stage's first)."""
    lines = ["| generation | stage | best member | population mean ± std | kept fraction | m evaluated |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if "stage_start_fitness" in r:
            lines.append(f"| {r['generation'] - 1} (stage start) | {r['stage']} | | | | "
                         f"{r['stage_start_fitness']:.3f} |")
        if "eval_fitness" in r:
            lines.append(f"| {r['generation']} | {r['stage']} | {r['fitness_best']:.3f} | "
                         f"{r['fitness_mean']:.3f} ± {r['fitness_std']:.3f} | {r['kept_fraction']:.3f} | "
                         f"{r['eval_fitness']:.3f} |")
    return "\n".join(lines) + "\n"


def write_evolution_figure(run_dir: Path, figure: Path) -> str:
    """Plot ``run_dir/log.jsonl`` to ``figure``; return the markdown summary table."""
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no such evolution folder: {run_dir}")
    log = run_dir / "log.jsonl"
    rows = read_rows(log)
    if not rows:
        raise ValueError(f"{log}: no generations logged yet")
    for number, row in enumerate(rows, start=1):
        missing = [key for key in LOG_FIELDS if key not in row]
        if missing:
            raise ValueError(f"{log}: row {number} is not an evolution log row (missing {', '.join(missing)})")
    plot_fitness(rows, figure)
    return summary_table(rows)


def write_summary(run_dir: Path, out: Path, figure: Path) -> None:
    """A stand-alone markdown summary of a run (curve + table)."""
    table = write_evolution_figure(run_dir, figure)
    config = json.loads((run_dir / "namm_best.json").read_text()) if (run_dir / "namm_best.json").exists() else {}
    text = f"# Evolution run {run_dir}\n\n![fitness]({figure.name})\n\n{table}\n"
    if config:
        text += f"\nBest checkpoint provenance: generation {config.get('provenance', {}).get('generation')}.\n"
    write_text_atomic(out, text)
