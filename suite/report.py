"""Reports from result rows: markdown tables of score vs cache size and score-vs-kept-tokens figures.

Tables and figures are generated from the JSONL rows only, never edited by hand. A resume key counts once
(the row written last wins, so a retried episode replaces its error row and a file that two sweeps wrote
is not double-counted); failed episodes are listed by cell, never averaged.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import save_figure_atomic
from .policies.spec import REFERENCE, default_label, is_reference
from .results import ResultsError, read_rows, write_text_atomic

OWN = "own"  # column of policies that choose their own cache size (full, threshold NAMM)


#: two-sided 95% quantiles of Student's t by degrees of freedom; between entries the smaller df's (wider).
_T95 = ((1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (5, 2.571), (6, 2.447), (7, 2.365), (8, 2.306),
        (9, 2.262), (10, 2.228), (12, 2.179), (15, 2.131), (20, 2.086), (25, 2.060), (30, 2.042), (40, 2.021),
        (60, 2.000), (120, 1.980))
SPREADS = {"se": "standard error", "ci95": "95% confidence interval (Student's t)"}


def t95(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (1.96 beyond 120; 0 for df < 1)."""
    if df < 1:
        return 0.0
    return next((t for d, t in reversed(_T95) if d <= df), 12.706) if df <= 120 else 1.960


@dataclass
class Cell:
    """Aggregate of one (task, policy, cache size) cell over episodes and seeds."""

    scores: list[float]
    kept: list[float]
    answer_kept: list[float] = field(default_factory=list)
    fraction: list[float] = field(default_factory=list)

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
    def ci95(self) -> float:
        """Half-width of the two-sided 95% confidence interval of the mean (Student's t, n − 1 degrees of
        freedom; 0 for a single episode)."""
        return t95(len(self.scores) - 1) * self.stderr

    def spread(self, kind: str) -> float:
        """``"se"``: the standard error; ``"ci95"``: the 95% confidence half-width."""
        return self.ci95 if kind == "ci95" else self.stderr

    @property
    def mean_kept(self) -> float:
        return sum(self.kept) / len(self.kept)

    @property
    def mean_answer_kept(self) -> float | None:
        """Keys held per head when the first answer token is read (None for rows that predate it)."""
        return sum(self.answer_kept) / len(self.answer_kept) if self.answer_kept else None

    @property
    def mean_fraction(self) -> float | None:
        """Share of the compressed part kept once it was read (None for rows that predate it)."""
        return sum(self.fraction) / len(self.fraction) if self.fraction else None


def table_name(row: dict[str, Any], by_length: bool = False) -> str:
    """A report table per task and protocol, and per prompt length when ``by_length`` (a report that mixes
    lengths): ``"passkey (scheduled protocol)"``, ``"passkey (query-aware protocol, 2048 tokens)"``."""
    where = f"{row.get('protocol', 'scheduled')} protocol"
    return f"{row['task']} ({where}, {row.get('length')} tokens)" if by_length else f"{row['task']} ({where})"


def _size_order(size: int | str) -> tuple[bool, float]:
    """Token budgets first, then relative ones (``"25%"``), each ascending."""
    return isinstance(size, str), float(str(size).rstrip("%"))


def policy_label(row: dict[str, Any]) -> str:
    """The policy's name in tables: ``window-K`` for a row of the cache-free window protocol (the
    ``decision-window`` adapter re-encodes the last K steps; it runs policy ``full``, whose cache rows it
    must not join), else the row's ``label`` (a sweep's named variant), else
    :func:`~namm_suite.policies.default_label` (NAMM rows name their rule and checkpoint, θ = 0 without one)."""
    extra = row.get("extra") or {}
    if extra.get("protocol") == "window" and "context_steps" in extra:
        return f"window-{extra['context_steps']}"
    return row.get("label") or default_label(row["policy"], row.get("policy_options") or {})


def latest_per_key(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with one row per resume key, the last written, in file order (rows without a key kept)."""
    last = {row["key"]: index for index, row in enumerate(rows) if "key" in row}
    return [row for index, row in enumerate(rows) if "key" not in row or last[row["key"]] == index]


def aggregate(rows: list[dict[str, Any]], label: Callable[[dict[str, Any]], str] | None = None,
              group: Callable[[dict[str, Any]], str] = lambda row: row["task"]
              ) -> dict[str, dict[tuple[str, int | None], Cell]]:
    """``task -> (policy label, cache_size) -> Cell`` over the rows with status ok, each resume key once
    (``label`` names a row's policy; default :func:`policy_label`; ``group`` names its table, e.g.
    :func:`table_name`)."""
    label_of = label or policy_label
    cells: dict[str, dict[tuple[str, int | None], Cell]] = defaultdict(dict)
    for row in latest_per_key(rows):
        if row.get("status", "ok") != "ok":
            continue
        cell = cells[group(row)].setdefault((label_of(row), row.get("cache_size")), Cell([], []))
        cell.scores.append(float(row["score"]))
        cell.kept.append(float(row["mean_kept"]))
        if row.get("context_tokens"):
            cell.answer_kept.append(float(row["answer_kept"]))
            cell.fraction.append(float(row["context_kept"]) / row["context_tokens"])
    return dict(cells)


def markdown_table(task: str, cells: dict[tuple[str, int | None], Cell], spread: str = "se") -> str:
    """Rows = policies, columns = cache sizes (+ "own" for self-sized policies); each cell shows
    mean ± ``spread`` (see :data:`SPREADS`), % of the full cache, and the mean tokens kept per head."""
    sizes = sorted({size for _, size in cells if size is not None}, key=_size_order)
    columns: list[int | None] = sizes + ([None] if any(size is None for _, size in cells) else [])
    policies = sorted({policy for policy, _ in cells}, key=lambda p: (not is_reference(p), p))
    full = cells.get((REFERENCE, None))
    header = "| policy | " + " | ".join(
        OWN if c is None else f"{c} of context" if isinstance(c, str) else f"{c} tokens/head" for c in columns) + " |"
    lines = [f"### {task}", "", header, "|---" * (len(columns) + 1) + "|"]
    for policy in policies:
        parts = []
        for column in columns:
            cell = cells.get((policy, column))
            if cell is None:
                parts.append("")
                continue
            relative = f", {100 * cell.mean / full.mean:.0f}% of full" if full and full.mean > 0 else ""
            at_answer = "" if cell.mean_answer_kept is None else (
                f" mean, {cell.mean_answer_kept:.0f} at the answer, {100 * cell.mean_fraction:.0f}% of context")
            parts.append(f"{cell.mean:.3f} ± {cell.spread(spread):.3f}{relative} (kept {cell.mean_kept:.0f}"
                         f"{at_answer}, n={len(cell.scores)})")
        lines.append(f"| {policy} | " + " | ".join(parts) + " |")
    return "\n".join(lines) + "\n"


def plot(task: str, cells: dict[tuple[str, int | None], Cell], path: Path, metric: str = "score",
         subtitle: str = "", axis: str = "tokens") -> None:
    """Score (``metric``, the y axis) against mean kept tokens per head: one line per budgeted policy,
    self-sized policies as single points, the full cache as a horizontal reference; one distinct colour
    per policy, the legend outside the axes. The title is the task and ``subtitle`` (model, length, n)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 4.4), dpi=110)
    by_policy: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    self_sized = {policy for policy, size in cells if size is None}
    for (policy, size), cell in cells.items():
        x = cell.mean_kept if axis == "tokens" else 100 * (cell.mean_fraction or 0.0)
        by_policy[policy].append((x, cell.mean, cell.stderr))
    colours = plt.get_cmap("tab10" if len(by_policy) <= 10 else "tab20").colors
    for index, policy in enumerate(sorted(by_policy)):
        points = sorted(by_policy[policy])
        xs, ys, es = zip(*points, strict=True)
        if is_reference(policy):
            ax.axhline(ys[0], color="black", linestyle="--", linewidth=1, label=f"{policy} ({xs[0]:.0f} kept)")
            continue
        style = "*" if policy in self_sized and len(points) == 1 else "o-"
        ax.errorbar(xs, ys, yerr=es, fmt=style, capsize=2, markersize=9 if style == "*" else 4, label=policy,
                    color=colours[index % len(colours)])
    ax.set_xlabel("mean tokens kept per KV head" if axis == "tokens" else "% of the context kept per KV head")
    ax.set_ylabel(f"{metric} (mean ± s.e.)")
    ax.set_title(f"{task}\n{subtitle}" if subtitle else task, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
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


@dataclass
class Report:
    """What :func:`write_report` wrote: ``paths`` (markdown first, then figures), ``ok_rows`` counted,
    ``failed`` error rows and their ``failed_cells`` ``(task, policy label, cache size, count, first error)``."""

    paths: list[Path]
    ok_rows: int
    failed: int
    failed_cells: list[tuple[str, str, int | None, int, str]] = field(default_factory=list)


def failed_cells(rows: list[dict[str, Any]]) -> list[tuple[str, str, int | None, int, str]]:
    """``(task, policy label, cache size, failed episodes, first error)`` of every cell with error rows."""
    grouped: dict[tuple[str, str, int | None], list[str]] = defaultdict(list)
    for row in latest_per_key(rows):
        if row.get("status", "ok") != "ok":
            grouped[(row["task"], policy_label(row), row.get("cache_size"))].append(str(row.get("error", "")))
    return [(*cell, len(errors), errors[0]) for cell, errors in sorted(grouped.items(), key=str)]


def failures_table(cells: list[tuple[str, str, int | None, int, str]]) -> str:
    """Markdown section listing the failed cells (tracebacks: ``<results>.errors.log`` beside the file)."""
    lines = ["## Failed episodes", "", ("Not counted in the tables above; tracebacks are in the "
             "`<results>.errors.log` file beside each results file."), "",
             "| task | policy | tokens/head | failed | first error |", "|---|---|---|---|---|"]
    for task, policy, size, count, error in cells:
        lines.append(f"| {task} | {policy} | {size or OWN} | {count} | {error.replace('|', '/')[:200]} |")
    return "\n".join(lines) + "\n"


def prompt_length(rows: list[dict[str, Any]]) -> str:
    """The prompt length rows ran with: measured prompt tokens when rows record them, else ``length``."""
    measured = [row["extra"]["prompt_tokens"] for row in rows if "prompt_tokens" in (row.get("extra") or {})]
    if measured:
        low, high = min(measured), max(measured)
        return f"{low} tokens" if low == high else f"{low}–{high} tokens (mean {sum(measured) / len(measured):.0f})"
    lengths = sorted({row.get("length") for row in rows}, key=str)
    return f"{', '.join(map(str, lengths))} tokens"


def write_report(results: list[Path], out: Path, title: str | None = None, axis: str = "tokens",
                 spread: str = "se", notes: Path | None = None) -> Report:
    """Write ``out`` (.md) with one table per task and protocol, the failed cells, and ``out`` stem +
    ``_<task>[_<protocol>].png`` figures (one figure named ``out.png`` when there is a single table).
    ``axis``: the figures' x axis, ``tokens`` (mean kept per head) or ``fraction`` (% of the context kept).
    ``notes``: a markdown file (the written reading of the result) appended after the generated part, so
    the report is regenerated whole and the hand-written text lives apart from it."""
    if axis not in ("tokens", "fraction"):
        raise ValueError(f"axis must be 'tokens' or 'fraction', got {axis!r}")
    if spread not in SPREADS:
        raise ValueError(f"spread must be one of {sorted(SPREADS)}, got {spread!r}")
    if notes is not None and not notes.is_file():
        raise FileNotFoundError(f"notes file not found: {notes}")
    reading = None if notes is None else notes.read_text(encoding="utf-8")
    rows = latest_per_key([row for path in results for row in _sweep_rows(path)])
    if not rows:
        raise ValueError(f"no result rows in {', '.join(map(str, results))}")
    by_length = len({row.get("length") for row in rows}) > 1
    name = functools.partial(table_name, by_length=by_length)
    cells = aggregate(rows, group=name)
    ok = [row for row in rows if row.get("status", "ok") == "ok"]
    failures = failed_cells(rows)
    commits = sorted({row.get("provenance", {}).get("git_commit", "unknown") for row in rows})
    models = sorted({row["model"] for row in rows})
    first = rows[0]
    text = [f"# {title or 'Score vs cache size'}", "",
            (f"Model {', '.join(models)}; memory update every {first.get('update_every')} tokens; "
            f"prompt length {prompt_length(ok or rows)}. Cells: mean score ± {SPREADS[spread]} over episodes "
            f"and seeds, % of the full cache, tokens kept per KV head: the mean over the whole episode "
            f"(time-averaged) and, for rows that record it, the keys held when the first answer token is read "
            f"and the share of the context kept. Generated by `namm report` "
            f"from {', '.join(p.name for p in results)} (commit {', '.join(commits)})."), ""]
    if failures:
        text += [(f"**{sum(c[3] for c in failures)} episodes failed** in {len(failures)} cells (listed under "
                  "'Failed episodes' below)."), ""]
    written = [out]
    for task in sorted(cells):
        task_rows = [row for row in ok if name(row) == task]
        protocol = task_rows[0].get("protocol", "scheduled")
        slug = task_rows[0]["task"] + ("" if protocol == "scheduled" else f"_{protocol}")
        slug += f"_{task_rows[0].get('length')}" if by_length else ""
        figure = out.with_suffix(".png") if len(cells) == 1 else out.with_name(f"{out.stem}_{slug}.png")
        counts = sorted({len(cell.scores) for cell in cells[task].values()})
        n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
        subtitle = (f"{', '.join(sorted({row['model'] for row in task_rows}))}, prompt "
                    f"{prompt_length(task_rows)}, n={n} episodes per point")
        plot(task, cells[task], figure, metric=task_rows[0].get("metric") or "score", subtitle=subtitle, axis=axis)
        written.append(figure)
        text += [markdown_table(task, cells[task], spread), f"![{task}]({figure.name})", ""]
    if failures:
        text.append(failures_table(failures))
    if reading is not None:
        text.append(reading)
    write_text_atomic(out, "\n".join(text))
    return Report(written, len(ok), sum(c[3] for c in failures), failures)
