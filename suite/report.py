"""Reports from result rows: markdown tables of score vs cache size and score-vs-kept-tokens figures.

Tables and figures are generated from the JSONL rows only, never edited by hand.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import save_figure_atomic
from .results import ResultsError, read_rows, write_text_atomic

OWN = "own"  # column of policies that choose their own cache size (full, threshold NAMM)


@dataclass
class Cell:
    """Aggregate of one (task, policy, cache size) cell over episodes and seeds."""

    scores: list[float]
    kept: list[float]

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores)

    @property
    def stderr(self) -> float:
        n = len(self.scores)
        if n < 2:
            return 0.0
        var = sum((s - self.mean) ** 2 for s in self.scores) / (n - 1)
        return math.sqrt(var / n)

    @property
    def mean_kept(self) -> float:
        return sum(self.kept) / len(self.kept)


def policy_label(row: dict[str, Any]) -> str:
    """The policy's name in tables; NAMM rows also name their rule and checkpoint (θ = 0 without one)."""
    if row["policy"] != "namm":
        return row["policy"]
    options = row.get("policy_options") or {}
    checkpoint = options.get("checkpoint")
    label = "namm-threshold" if options.get("selection") == "threshold" else "namm"
    return f"{label} [{Path(checkpoint).name if checkpoint else 'θ=0'}]"


def aggregate(rows: list[dict[str, Any]], label: Callable[[dict[str, Any]], str] | None = None
              ) -> dict[str, dict[tuple[str, int | None], Cell]]:
    """``task -> (policy label, cache_size) -> Cell`` over the rows with status ok (``label`` names a
    row's policy; default :func:`policy_label`)."""
    label_of = label or policy_label
    cells: dict[str, dict[tuple[str, int | None], Cell]] = defaultdict(dict)
    for row in rows:
        if row.get("status", "ok") != "ok":
            continue
        cell = cells[row["task"]].setdefault((label_of(row), row.get("cache_size")), Cell([], []))
        cell.scores.append(float(row["score"]))
        cell.kept.append(float(row["mean_kept"]))
    return dict(cells)


def markdown_table(task: str, cells: dict[tuple[str, int | None], Cell]) -> str:
    """Rows = policies, columns = cache sizes (+ "own" for self-sized policies); each cell shows
    mean ± standard error, % of the full cache, and the mean tokens kept per head."""
    sizes = sorted({size for _, size in cells if size is not None})
    columns: list[int | None] = sizes + ([None] if any(size is None for _, size in cells) else [])
    policies = sorted({policy for policy, _ in cells}, key=lambda p: (p != "full", p))
    full = cells.get(("full", None))
    header = "| policy | " + " | ".join(f"{c} tokens/head" if c else OWN for c in columns) + " |"
    lines = [f"### {task}", "", header, "|---" * (len(columns) + 1) + "|"]
    for policy in policies:
        parts = []
        for column in columns:
            cell = cells.get((policy, column))
            if cell is None:
                parts.append("")
                continue
            relative = f", {100 * cell.mean / full.mean:.0f}% of full" if full and full.mean > 0 else ""
            parts.append(f"{cell.mean:.3f} ± {cell.stderr:.3f}{relative} (kept {cell.mean_kept:.0f}, "
                         f"n={len(cell.scores)})")
        lines.append(f"| {policy} | " + " | ".join(parts) + " |")
    return "\n".join(lines) + "\n"


def plot(task: str, cells: dict[tuple[str, int | None], Cell], path: Path) -> None:
    """Score against mean kept tokens per head: one line per budgeted policy, self-sized policies as
    single points (the full cache as a horizontal reference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    by_policy: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for (policy, size), cell in cells.items():
        by_policy[policy].append((cell.mean_kept, cell.mean, cell.stderr))
    for policy in sorted(by_policy):
        points = sorted(by_policy[policy])
        xs, ys, es = zip(*points, strict=True)
        if policy == "full":
            ax.axhline(ys[0], color="black", linestyle="--", linewidth=1, label=f"full ({xs[0]:.0f} kept)")
            continue
        style = "*" if policy.startswith("namm") and len(points) == 1 else "o-"
        ax.errorbar(xs, ys, yerr=es, fmt=style, capsize=2, markersize=9 if style == "*" else 4, label=policy)
    ax.set_xlabel("mean tokens kept per KV head")
    ax.set_ylabel("score")
    ax.set_title(task)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure_atomic(fig, path)


def _sweep_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a sweep results file; a row that is not a sweep result raises :class:`ResultsError`."""
    rows = read_rows(path)
    for number, row in enumerate(rows, start=1):
        need = ["task", "model", "policy"] + (["score", "mean_kept"] if row.get("status", "ok") == "ok" else [])
        missing = [key for key in need if key not in row]
        if missing:
            raise ResultsError(f"{path}: row {number} is not a sweep result row (missing {', '.join(missing)})")
    return rows


def write_report(results: list[Path], out: Path, title: str | None = None) -> list[Path]:
    """Write ``out`` (.md) with one table per task and ``out`` stem + ``_<task>.png`` figures (one figure
    named ``out.png`` when there is a single task). Returns the written paths."""
    rows = [row for path in results for row in _sweep_rows(path)]
    if not rows:
        raise ValueError(f"no result rows in {', '.join(map(str, results))}")
    cells = aggregate(rows)
    commits = sorted({row.get("provenance", {}).get("git_commit", "unknown") for row in rows})
    models = sorted({row["model"] for row in rows})
    first = rows[0]
    text = [f"# {title or 'Score vs cache size'}", "",
            (f"Model {', '.join(models)}; memory update every {first.get('update_every')} tokens; "
            f"prompt length {first.get('length')} tokens. Cells: mean score ± standard error over episodes "
            f"and seeds, % of the full cache, mean tokens kept per KV head. Generated by `namm report` "
            f"from {', '.join(p.name for p in results)} (commit {', '.join(commits)})."), ""]
    written = [out]
    for task in sorted(cells):
        figure = out.with_suffix(".png") if len(cells) == 1 else out.with_name(f"{out.stem}_{task}.png")
        plot(task, cells[task], figure)
        written.append(figure)
        text += [markdown_table(task, cells[task]), f"![{task}]({figure.name})", ""]
    write_text_atomic(out, "\n".join(text))
    return written
