"""``namm run --plan``: what a sweep would do to its results file, counted without running or writing anything.

The counts come from the runner's own planning (:func:`namm_suite.runner._plan` and
:func:`~namm_suite.runner.row_key`), so "missing" is exactly what the next ``namm run`` computes. Planning
builds each sweep's adapter (tasks need its tokenizer to make their episodes, and the adapter checks them)
but never runs the model; the results file is only read (no lock, no probe file, nothing created).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .results import read_rows
from .runner import SweepConfig, _plan, cell_name
from .sweep_file import SweepRun, sweeps_with_adapters


@dataclass
class CellCount:
    """Episodes of one (task, cell) of a sweep, over its seeds.

    Attributes:
        done: episodes whose newest row is ``ok``. failed: whose newest row is an error (``namm run`` skips
            them unless ``--retry-errors``). missing: with no row (the next ``namm run`` computes them).
    """

    task: str
    cell: str
    done: int = 0
    failed: int = 0
    missing: int = 0


@dataclass
class SweepPlan:
    """One sweep's counts per (task, cell), in the runner's order, and every key it plans."""

    config: SweepConfig
    out: Path
    cells: list[CellCount] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)

    def total(self, name: str) -> int:
        """The sum of one count (``done``, ``failed`` or ``missing``) over the cells."""
        return sum(getattr(cell, name) for cell in self.cells)


def plan_sweep(config: SweepConfig, out: Path, adapter: Any, latest: dict[str, dict[str, Any]]) -> SweepPlan:
    """Count ``config``'s episodes per cell against ``latest`` (resume key -> newest row of ``out``)."""
    plan = SweepPlan(config, out)
    counts: dict[tuple[str, str], CellCount] = {}
    for task, _seed, _episode, spec, key in _plan(config, adapter)[1]:
        where = (task.name, cell_name(spec))
        if where not in counts:
            counts[where] = CellCount(*where)
            plan.cells.append(counts[where])
        row = latest.get(key)
        status = "missing" if row is None else "done" if row.get("status") == "ok" else "failed"
        setattr(counts[where], status, getattr(counts[where], status) + 1)
        plan.keys.add(key)
    return plan


def plan_sweeps(sweeps: list[SweepRun]) -> tuple[list[SweepPlan], dict[Path, dict[str, dict[str, Any]]]]:
    """Every sweep's plan, and each results file's newest row per key (read once per file)."""
    latest: dict[Path, dict[str, dict[str, Any]]] = {}
    plans = []
    for sweep, adapter in sweeps_with_adapters(sweeps):
        if sweep.out not in latest:
            latest[sweep.out] = {row["key"]: row for row in read_rows(sweep.out) if "key" in row}
        plans.append(plan_sweep(sweep.config, sweep.out, adapter, latest[sweep.out]))
    return plans, latest


def format_plan(plans: list[SweepPlan], latest: dict[Path, dict[str, dict[str, Any]]],
                retry_errors: bool = False) -> str:
    """The plans as text: one table per sweep (task, cell, done, failed, missing), then one line per results
    file with its totals, what ``namm run`` would run, and how many of its rows no planned cell holds."""
    lines = []
    for plan in plans:
        config = plan.config
        evict = "" if config.protocol == "scheduled" else f", evict {config.evict}"
        lines += [(f"{plan.out}: {config.adapter}/{config.model}, {config.protocol} protocol{evict}, length "
                   f"{config.length}, seeds {','.join(map(str, config.seeds))}"),
                  *_table([("task", "cell", "done", "failed", "missing")] + [
                      (c.task, c.cell, str(c.done), str(c.failed), str(c.missing)) for c in plan.cells]), ""]
    for out, rows in latest.items():
        mine = [plan for plan in plans if plan.out == out]
        done, failed, missing = (sum(plan.total(name) for plan in mine) for name in ("done", "failed", "missing"))
        planned = set().union(*(plan.keys for plan in mine))
        outside = sum(key not in planned for key in rows)
        runs = missing + failed if retry_errors else missing
        retry = "" if retry_errors or not failed else f" ({missing + failed} with --retry-errors)"
        lines.append(f"{out}: {done + failed + missing} episodes planned: {done} done, {failed} failed, {missing} "
                     f"missing; namm run would run {runs}{retry}; {outside} rows of the file are in no planned "
                     "cell")
    return "\n".join(lines)


def _table(rows: Iterable[tuple[str, ...]]) -> list[str]:
    """Left-aligned text columns, numbers right-aligned, two spaces apart, indented by two."""
    rows = list(rows)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(cell.rjust(width) if i >= 2 else cell.ljust(width)
                             for i, (cell, width) in enumerate(zip(row, widths, strict=True))).rstrip()
            for row in rows]
