"""The cross-modal transfer table and figure, built only from sweep result rows.

Rows of the table are policies, columns are modality × cache budget, and each cell is the policy's score
as a percentage of the full cache's score on the same episodes (averaged over the modality's tasks),
with the mean tokens kept per KV head beside it. Policies that choose their own cache size (the full
cache, the NAMM at its own threshold, the Decision Transformer's K-step window) fill the ``own`` column.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import save_figure_atomic
from .policies.spec import REFERENCE as FULL
from .policies.spec import is_learned
from .report import OWN, aggregate, policy_label
from .results import write_text_atomic

LEGEND_INCHES = 2.0  # figure width kept right of the panels for the legend


@dataclass
class TransferCell:
    """One policy at one budget of one modality, relative to the full cache."""

    percent: float  # mean over tasks of 100 × score / full-cache score
    kept: float  # mean tokens kept per KV head (query-weighted over the episode)
    tasks: int  # tasks that entered the mean (those where the full cache scores above 0)
    episodes: int  # scored episodes (all seeds) of those tasks


@dataclass
class ModalityResult:
    """Everything the table needs about one modality."""

    name: str
    budgets: list[int]
    cells: dict[tuple[str, int | None], TransferCell]
    full_scores: dict[str, float]  # task -> full-cache mean score
    metrics: dict[str, str]  # task -> metric name


def summarise(name: str, rows: list[dict[str, Any]], budgets: Sequence[int],
              label: Callable[[dict[str, Any]], str] = policy_label) -> ModalityResult:
    """Aggregate one modality's rows: per task relative to the full cache, then averaged over tasks."""
    relabelled = [{**row, "policy_label": label(row)} for row in rows]
    per_task = aggregate(relabelled, label=lambda row: row["policy_label"])
    full_scores = {task: cells[(FULL, None)].mean for task, cells in per_task.items() if (FULL, None) in cells}
    metrics = {row["task"]: row.get("metric", "") for row in rows}
    pooled: dict[tuple[str, int | None], list[tuple[float, float, int]]] = defaultdict(list)
    for task, cells in per_task.items():
        reference = full_scores.get(task, 0.0)
        if reference <= 0:
            continue  # nothing to be relative to (the full cache fails this task)
        for key, cell in cells.items():
            pooled[key].append((100.0 * cell.mean / reference, cell.mean_kept, len(cell.scores)))
    cells_out = {key: TransferCell(sum(p for p, _, _ in v) / len(v), sum(k for _, k, _ in v) / len(v), len(v),
                                   sum(n for _, _, n in v))
                 for key, v in pooled.items()}
    return ModalityResult(name, list(budgets), cells_out, full_scores, metrics)


def format_cell(cell: TransferCell | None) -> str:
    """``percent% (kept)``, or empty for a policy that did not run at that size."""
    return f"{cell.percent:.0f}% ({cell.kept:.0f})" if cell else ""


def row_order(results: list[ModalityResult]) -> list[str]:
    """Policy labels in table order: full, the NAMM rows, then the rest alphabetically."""
    labels = {label for r in results for label, _ in r.cells}
    first = [FULL] + sorted(label for label in labels if is_learned(label))
    return [x for x in first if x in labels] + sorted(labels - set(first))


def markdown(results: list[ModalityResult], title: str = "Cross-modal zero-shot transfer") -> str:
    """The transfer table: ``percent% (kept)`` per cell, then the full cache's absolute scores."""
    columns = [(r, size) for r in results for size in [None, *r.budgets]]
    head = " | ".join(f"{r.name} {OWN if size is None else size}" for r, size in columns)
    lines = [f"# {title}", "", f"| policy | {head} |", "|---" * (len(columns) + 1) + "|"]
    for label in row_order(results):
        cells = [format_cell(r.cells.get((label, size))) for r, size in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", ("Cells: score as % of the full cache on the same episodes, averaged over the modality's "
              "tasks, and (in brackets) the mean tokens kept per KV head. Column `own`: policies that set "
              "their own cache size. Full-cache scores:")]
    for r in results:
        scores = ", ".join(f"{task} {score:.3g} ({r.metrics.get(task, '')})"
                           for task, score in sorted(r.full_scores.items()))
        lines.append(f"- {r.name}: {scores}")
        skipped = [t for t, s in r.full_scores.items() if s <= 0]
        if skipped:
            lines.append(f"  (left out of the percentages, the full cache scores 0: {', '.join(skipped)})")
    return "\n".join(lines) + "\n"


def plot(results: list[ModalityResult], path: Path) -> None:
    """One panel per modality: % of full-cache score against mean kept tokens, a line per policy (dots: fixed
    budgets, a star: the policy's own cache size); each panel's title gives its tasks and episode counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    width = 4.4 * len(results) + LEGEND_INCHES
    fig, axes = plt.subplots(1, len(results), figsize=(width, 3.8), squeeze=False)
    colors = {label: f"C{i % 10}" for i, label in enumerate(row_order(results))}  # one colour per policy
    for ax, r in zip(axes[0], results):
        for label in row_order([r]):
            points = sorted((c.kept, c.percent) for (lab, size), c in r.cells.items()
                            if lab == label and size is not None)
            own = r.cells.get((label, None))
            if points:
                ax.plot(*zip(*points), "o-", color=colors[label], label=label,
                        lw=2.2 if is_learned(label) else 1.2)
            if own is not None:
                ax.plot([own.kept], [own.percent], "*", ms=13, color=colors[label],
                        label=None if points else label)
        ax.set(title=panel_title(r), xlabel="mean tokens kept per KV head", ylabel="% of full-cache score")
        ax.title.set_fontsize(9)
        ax.axhline(100, color="grey", lw=0.8, ls=":")
        ax.grid(True, alpha=0.3)
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_lines() if not h.get_label().startswith("_")}
    handles["at a fixed budget"] = Line2D([], [], color="black", marker="o", lw=1.2)
    handles["at its own cache size"] = Line2D([], [], color="black", marker="*", ms=11, lw=0)
    fig.suptitle("Zero-shot transfer: score as % of the full cache on the same episodes")
    fig.legend(handles.values(), handles.keys(), fontsize=9, loc="center right", title="policy")
    fig.tight_layout(rect=(0, 0, 1 - LEGEND_INCHES / width, 1))
    save_figure_atomic(fig, path, dpi=110, metadata={"Software": None})


def panel_title(result: ModalityResult) -> str:
    """``"language: 2 tasks, n = 40 episodes per point"``: the tasks in the percentages and the episodes
    behind each point (a range when points differ)."""
    counts = sorted({cell.episodes for cell in result.cells.values()})
    n = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}" if counts else "0"
    tasks = sum(score > 0 for score in result.full_scores.values())
    return f"{result.name}: {tasks} task{'s' * (tasks != 1)}, n = {n} episodes per point"


def write(results: list[ModalityResult], out_md: Path) -> None:
    """Write ``out_md`` and the figure beside it (``.png``), both atomically."""
    write_text_atomic(out_md, markdown(results))
    plot(results, out_md.with_suffix(".png"))


