"""Sweeps: adapter × model × task × policy × cache size × seed → one JSON line per finished episode.

The sweep is resumable: each row carries a key of everything that determines its result, and a rerun
skips keys already in the results file. Rows are appended atomically (see :mod:`namm_suite.results`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .manager import MemoryConfig, MemoryManager
from .policies import POLICIES, create_policy
from .provenance import provenance
from .results import append_row, check_writable, read_rows

logger = logging.getLogger(__name__)


@dataclass
class SweepConfig:
    """A sweep, as ``namm run`` takes it (every field can come from the command line or a YAML file).

    Attributes:
        adapter / model: registered adapter name and model (embedded name or local path).
        tasks / policies: registered names. ``cache_sizes``: tokens per KV head for budgeted policies
            (``full`` runs once; ``namm`` runs once at its own threshold, plus at every cache size as a cap
            when ``namm_cap`` is set).
        seeds: episode-generation seeds (also the random policy's seed).
        limit: episodes per task and seed. length: target prompt tokens (synthetic) or window (loaders).
        update_every: memory schedule; ``namm_checkpoint`` / ``selection``: NAMM settings.
        data_path: local data for loader tasks; task_options: extra task parameters.
    """

    tasks: list[str]
    policies: list[str]
    cache_sizes: list[int] = field(default_factory=list)
    adapter: str = "language"
    model: str = "smollm2-135m"
    seeds: list[int] = field(default_factory=lambda: [0])
    limit: int | None = None
    length: int = 1024
    update_every: int = 64
    namm_checkpoint: str | None = None
    selection: str = "kappa"
    namm_cap: bool = False
    data_path: str | None = None
    task_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from .tasks import TASKS

        for name in self.tasks:
            TASKS.get(name)
        for name in self.policies:
            POLICIES.get(name)
        for size in self.cache_sizes:
            if int(size) <= 0:
                raise ValueError(f"cache size must be > 0 tokens per head, got {size}")
        if any(POLICIES.get(p).uses_budget for p in self.policies) and not self.cache_sizes:
            raise ValueError("budgeted policies need at least one --cache-size")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"limit must be > 0, got {self.limit}")
        if not self.tasks or not self.policies or not self.seeds:
            raise ValueError("a sweep needs at least one task, one policy and one seed")
        if self.length <= 0:
            raise ValueError(f"length must be > 0 tokens, got {self.length}")
        MemoryConfig(update_every=self.update_every)  # validates the schedule
        if "namm" in self.policies:  # a bad checkpoint is refused before any episode runs
            create_policy("namm", checkpoint=self.namm_checkpoint, selection=self.selection)


@dataclass(frozen=True)
class RunSpec:
    """One (policy, cache size) cell of the sweep."""

    policy: str
    cache_size: int | None

    def options(self, config: SweepConfig, seed: int) -> dict[str, Any]:
        if self.policy == "namm":
            return {"checkpoint": config.namm_checkpoint, "selection": config.selection}
        if self.policy == "random":
            return {"seed": seed}
        return {}


def expand(config: SweepConfig) -> list[RunSpec]:
    """The (policy, cache size) cells of a sweep, in a stable order."""
    specs = []
    for name in config.policies:
        if POLICIES.get(name).uses_budget:
            specs.extend(RunSpec(name, int(size)) for size in config.cache_sizes)
        else:
            specs.append(RunSpec(name, None))
            if name == "namm" and config.namm_cap:
                specs.extend(RunSpec(name, int(size)) for size in config.cache_sizes)
    return specs


def row_key(config: SweepConfig, spec: RunSpec, task: str, seed: int, episode_id: str) -> str:
    """Everything that determines a row's result, hashed (timings and provenance excluded)."""
    parts = {
        "adapter": config.adapter, "model": config.model, "task": task, "seed": seed, "episode": episode_id,
        "policy": spec.policy, "cache_size": spec.cache_size, "length": config.length,
        "update_every": config.update_every, "options": spec.options(config, seed),
        "task_options": config.task_options,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def run_sweep(config: SweepConfig, out: Path, adapter=None, console: Console | None = None) -> int:
    """Run every missing episode of ``config``, appending rows to ``out``; returns rows written."""
    from .adapters.base import create_adapter
    from .tasks import TASKS, TaskContext

    check_writable(out)
    done = {row["key"] for row in read_rows(out) if row.get("status") == "ok"}
    adapter = adapter or create_adapter(config.adapter, config.model)
    specs = expand(config)
    work = []
    for task_name in config.tasks:
        task = TASKS.get(task_name)()
        for seed in config.seeds:
            context = TaskContext(tokenizer=getattr(adapter, "tokenizer", None), length=config.length, seed=seed,
                                  limit=config.limit, data_path=Path(config.data_path) if config.data_path else None,
                                  options=dict(config.task_options))
            for episode in task.episodes(context):
                for spec in specs:
                    key = row_key(config, spec, task_name, seed, episode.episode_id)
                    if key not in done:
                        work.append((task, seed, episode, spec, key))
    base = {"provenance": provenance(), "config": asdict(config)}
    written = 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console or Console(stderr=True)) as progress:
        bar = progress.add_task(f"{config.adapter}/{config.model}", total=len(work))
        for task, seed, episode, spec, key in work:
            row = _run_one(config, adapter, task, seed, episode, spec)
            append_row(out, {**row, "key": key, **base})
            written += 1
            progress.advance(bar)
    logger.info("wrote %d rows to %s (%d already done)", written, out, len(done))
    return written


def _run_one(config: SweepConfig, adapter, task, seed: int, episode, spec: RunSpec) -> dict[str, Any]:
    row: dict[str, Any] = {
        "task": task.name, "adapter": config.adapter, "model": config.model, "policy": spec.policy,
        "cache_size": spec.cache_size, "seed": seed, "episode_id": episode.episode_id,
        "length": config.length, "update_every": config.update_every, "metric": task.metric,
        "policy_options": spec.options(config, seed), "episode_metadata": episode.metadata,
    }
    start = time.perf_counter()
    try:
        policy = create_policy(spec.policy, **spec.options(config, seed))
        manager = MemoryManager(policy, MemoryConfig(update_every=config.update_every, budget=spec.cache_size))
        prediction = adapter.run(episode, manager)
        score = task.score(prediction.output, episode)
    except Exception as err:  # a failed episode is recorded and the sweep goes on
        logger.exception("episode %s failed", episode.episode_id)
        return {**row, "status": "error", "error": f"{type(err).__name__}: {err}",
                "wall_seconds": time.perf_counter() - start}
    return {**row, "status": "ok", "score": score, "prediction": prediction.output,
            "references": list(episode.references), **prediction.stats.as_dict(),
            "extra": prediction.extra, "wall_seconds": time.perf_counter() - start}
