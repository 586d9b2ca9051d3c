"""``namm demo``: the cross-modal zero-shot transfer table.

One NAMM, evolved on language (the shipped checkpoint), is applied unchanged to the embedded language
model, the tiny video-LLM and the tiny Decision Transformer, and compared with every baseline at the same
cache budgets. Each modality is an ordinary resumable sweep (:func:`namm_suite.runner.run_sweep`), so a
rerun skips finished episodes; the table and figure are then built from the result rows only
(:mod:`namm_suite.transfer_report`). Profiles are data: ``quick`` (a CI smoke run, ~2 minutes),
``default`` (``make demo``, < 15 minutes on 2 CPU cores) and ``full`` (more episodes and budgets).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from .policies import POLICIES, REFERENCE
from .report import policy_label
from .results import read_rows
from .runner import SweepConfig, run_sweep
from .shipped import SHIPPED_NAMM
from .transfer_report import ModalityResult, format_cell, row_order, summarise, write

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Modality:
    """One column group of the transfer table: a sweep over every policy at ``budgets``.

    Attributes:
        name: column label. adapter / model: registered adapter and embedded model (or local path).
        tasks: task names; length: tokens per episode (prompt tokens, visual tokens + question, or
            3 × environment steps); budgets: tokens per KV head, chosen relative to ``length``.
        seeds / limit: episode seeds and episodes per task and seed. update_every: memory schedule.
        task_options: extra task parameters. reference_adapter: an extra policy-free protocol run with
            the ``full`` policy and shown as its own row (the DT's classic K-step window).
        threads: torch threads for this modality (None: torch's default). Tiny models run fastest on one
            thread; more only adds synchronisation, and on a shared machine oversubscription.
    """

    name: str
    adapter: str
    model: str
    tasks: tuple[str, ...]
    length: int
    budgets: tuple[int, ...]
    seeds: tuple[int, ...] = (0,)
    limit: int | None = None
    update_every: int = 64
    task_options: dict[str, Any] = field(default_factory=dict)
    reference_adapter: str | None = None
    reference_label: str = ""
    threads: int | None = 1
    device: str = "auto"
    dtype: str = "fp32"

    def sweep(self, namm_checkpoint: str, adapter: str | None = None,
              policies: list[str] | None = None) -> SweepConfig:
        return SweepConfig(
            tasks=list(self.tasks), policies=policies or POLICIES.names(),
            cache_sizes=list(self.budgets) if policies is None else [], adapter=adapter or self.adapter,
            model=self.model, seeds=list(self.seeds), limit=self.limit, length=self.length,
            update_every=self.update_every, namm_checkpoint=namm_checkpoint, namm_cap=policies is None,
            task_options=dict(self.task_options), device=self.device, dtype=self.dtype)


LANGUAGE = Modality(
    name="language", adapter="language", model="smollm2-135m", tasks=("passkey", "variable_tracking"),
    length=512, budgets=(128, 256), seeds=(0, 1), limit=5, update_every=64, threads=None)
VIDEO = Modality(  # 64 frames x 4 visual tokens + the question; the needle task does not separate policies
    name="video", adapter="video", model="tiny-video-llm", tasks=("video_count", "video_order"),
    length=263, budgets=(32, 64), seeds=(0,), limit=20, update_every=32)
DECISION = Modality(  # up to 500 environment steps of 3 tokens; the DT was trained on K = 20 steps (60 tokens)
    name="decision", adapter="decision", model="dt-hopper", tasks=("hopper",), length=1500, budgets=(24, 60),
    seeds=(0, 1, 2), limit=1, update_every=48, reference_adapter="decision-window",
    reference_label="dt window (K steps)")

PROFILES: dict[str, tuple[Modality, ...]] = {
    "default": (LANGUAGE, VIDEO, DECISION),
    "quick": (replace(LANGUAGE, tasks=("passkey",), seeds=(0,), limit=1, budgets=(128,)),
              replace(VIDEO, limit=1, budgets=(32,)),
              replace(DECISION, length=300, seeds=(0,), budgets=(60,))),
    "full": (replace(LANGUAGE, seeds=(0, 1, 2, 3), budgets=(64, 128, 256)),
             replace(VIDEO, tasks=("video_needle", "video_count", "video_order"), limit=30, budgets=(32, 64, 128)),
             replace(DECISION, length=3000, seeds=(0, 1, 2, 3, 4), budgets=(24, 60, 240))),
}


def run_modality(modality: Modality, runs_dir: Path, namm_checkpoint: str, console: Console) -> list[dict]:
    """Run (or resume) the modality's sweeps; return its ok and error rows."""
    threads = torch.get_num_threads()
    torch.set_num_threads(modality.threads or threads)
    try:
        return _sweeps(modality, runs_dir, namm_checkpoint, console)
    finally:
        torch.set_num_threads(threads)


def _sweeps(modality: Modality, runs_dir: Path, namm_checkpoint: str, console: Console) -> list[dict]:
    out = runs_dir / f"{modality.name}.jsonl"
    run_sweep(modality.sweep(namm_checkpoint), out, console=console)
    rows = read_rows(out)
    if modality.reference_adapter:
        ref_out = runs_dir / f"{modality.name}_{modality.reference_adapter}.jsonl"
        run_sweep(modality.sweep(namm_checkpoint, modality.reference_adapter, [REFERENCE]), ref_out, console=console)
        rows += read_rows(ref_out)
    return rows


def label_for(modality: Modality):
    """Row labels: the reference protocol's ``full`` rows get the modality's reference label."""
    def label(row: dict[str, Any]) -> str:
        if modality.reference_adapter and row.get("adapter") == modality.reference_adapter:
            return modality.reference_label
        return policy_label(row)

    return label


def run_demo(profile: str = "default", out: Path = Path("results"), namm_checkpoint: str | None = None,
             models: dict[str, str] | None = None, console: Console | None = None, device: str = "auto",
             dtype: str = "fp32") -> list[ModalityResult]:
    """Run every modality of ``profile``, write ``out/transfer.md`` and ``out/transfer.png`` and return
    the per-modality summaries. Raw rows go to ``out/transfer_runs/<modality>.jsonl`` (resumable).

    ``models`` replaces a modality's model (``{"language": "path/to/hf-causal-lm"}``); the rows are keyed
    by model, so results of different models never mix. ``device``/``dtype`` place the language and video
    models (the decision transformer is tiny and runs on the CPU in fp32, beside its simulator)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown demo profile {profile!r}; valid: {', '.join(PROFILES)}")
    modalities = {m.name: m for m in PROFILES[profile]}
    for name, model in (models or {}).items():
        if name not in modalities:
            raise ValueError(f"--model {name}=...: unknown modality {name!r}; valid: {', '.join(modalities)}")
        modalities[name] = replace(modalities[name], model=model)
    for name, modality in modalities.items():
        on_cpu = modality.adapter.startswith("decision")
        modalities[name] = replace(modality, device="cpu" if on_cpu else device, dtype="fp32" if on_cpu else dtype)
    console = console or Console(stderr=True)
    checkpoint = namm_checkpoint or str(SHIPPED_NAMM)
    runs_dir = out / "transfer_runs" if profile == "default" else out / f"transfer_runs_{profile}"
    results, walls = [], {}
    for modality in modalities.values():
        start = time.perf_counter()
        console.print(f"[bold]{modality.name}[/]: {modality.model}, tasks {', '.join(modality.tasks)}, "
                      f"budgets {', '.join(map(str, modality.budgets))} tokens/head")
        rows = run_modality(modality, runs_dir, checkpoint, console)
        failed = [r for r in rows if r.get("status") != "ok"]
        if failed:
            console.print(f"[yellow]{len(failed)} {modality.name} episodes failed[/] (see {runs_dir})")
        results.append(summarise(modality.name, rows, modality.budgets, label_for(modality)))
        walls[modality.name] = time.perf_counter() - start
    target = out / ("transfer.md" if profile == "default" else f"transfer_{profile}.md")
    write(results, target)
    _print_summary(console, results, walls, target)
    return results


def _print_summary(console: Console, results: list[ModalityResult], walls: dict[str, float], target: Path) -> None:
    grid = Table(title="score as % of full cache (mean kept tokens per head)")
    grid.add_column("policy")
    columns = [(r, size) for r in results for size in (None, *r.budgets)]
    for r, size in columns:
        grid.add_column(f"{r.name} {size or 'own'}")
    for label in row_order(results):
        grid.add_row(label, *[format_cell(r.cells.get((label, size))) for r, size in columns])
    console.print(grid)
    for name, seconds in walls.items():
        console.print(f"wall time {name}: {seconds:.0f} s")
    console.print(f"total {sum(walls.values()):.0f} s; wrote {target} and {target.with_suffix('.png')}")
