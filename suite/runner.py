"""Sweeps: adapter × model × task × policy × cache size × seed → one JSON line per finished episode.

The sweep is resumable: each row carries a key of everything that determines its result, and a rerun
skips keys already in the results file — failed episodes included, unless ``retry_errors`` is set. Rows
are appended atomically (see :mod:`namm_suite.results`) and the whole sweep holds the results file's lock,
so a second sweep on the same file stops at once instead of running every episode twice.

The key never holds this machine's paths: a NAMM checkpoint enters it by the sha256 of its tensors (from
its sidecar), and rows record paths relative to the project (see :func:`namm_suite.shipped.portable_path`).
A failed episode is a row with ``status: "error"``, one line on stderr and its traceback in
``<results>.errors.log``.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .batched_episodes import run_batches
from .device import placement
from .episode import (
    CHAT_TEMPLATES,
    PROMPT_DEFAULTS,
    EpisodeSettings,
    parse_cache_size,
    read_shared_prefix,
    run_episode,
)
from .manager import MemoryConfig
from .policies import PolicySpec, create_policy
from .provenance import provenance
from .results import append_row, check_writable, read_rows, sweep_lock
from .shipped import portable_path

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

logger = logging.getLogger(__name__)


@dataclass
class SweepConfig:
    """A sweep, as ``namm run`` takes it (every field can come from the command line or a YAML file).

    Attributes:
        adapter / model: registered adapter name and model (embedded name or local path; None: the
            adapter's default, :func:`~namm_suite.adapters.base.default_model`).
        tasks: registered names. policies: policy specs (:class:`~namm_suite.policies.PolicySpec`: a name,
            ``NAME:KEY=VALUE,...`` or a mapping), so one sweep can hold several variants of a policy.
            ``cache_sizes``: tokens per KV head for policies whose budget rule is ``required``; a policy
            with rule ``none`` (the full cache) runs once, one with rule ``cap`` (the NAMM) once at its own
            size, plus at every cache size as a cap when ``namm_cap`` is set.
        seeds: episode-generation seeds (also the random policy's seed).
        limit: episodes per task and seed. length: target prompt tokens (synthetic) or window (loaders).
        update_every: memory schedule; ``namm_checkpoint`` / ``selection``: the NAMM's ``checkpoint`` and
            ``selection`` fields, where a policy spec does not set them.
        data_path: local data for loader tasks; task_options: extra task parameters.
        device / dtype: where the model runs (``auto``/``cpu``/``cuda``; ``fp32``/``bf16``/``fp16``, see
            :mod:`namm_suite.device`); rows record the resolved device and the dtype.
        share_prefix: under a one-shot protocol (``evict: once``), read each episode's compressed part
            once for all its cells (:mod:`namm_suite.shared_prefix`: the same answers, far less compute;
            rows then time the shared read in every cell). False: each cell reads its own prompt.
        batch_size: episodes of one cell answered together (:mod:`namm_suite.batched_episodes`: the same
            rows, each with its share of the batch's time; no prefix sharing then). 1: one at a time.
        protocol: ``scheduled``, ``context`` or ``query-aware`` (:data:`~namm_suite.manager.PROTOCOLS`);
            ``evict``: ``schedule`` or ``once`` (the compressed part evicted only at its end, as kvpress).
        max_new_tokens: answer budget for every episode (None: each task's own, e.g. LongBench's
            ``dataset2maxlen``). chat_template: ``auto`` (each task's choice: LongBench sends few-shot and
            code prompts without it), ``chat`` (always the model's template) or ``none`` (never).
        policy_options: ``policy name -> {field: value}`` for the policies' dataclass fields (e.g.
            ``{"snapkv": {"window": 64, "kernel": 5, "pooling": "avg"}}``).

    A cache size is tokens per KV head (``128``) or a share of each episode's compressed part (``"25%"``:
    ``round(0.25 × n)`` tokens per head, ``n`` the context under ``context``, the whole prompt otherwise).
    """

    tasks: list[str]
    policies: list[str | dict[str, Any]]
    cache_sizes: list[int | str] = field(default_factory=list)
    adapter: str = "language"
    model: str | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    limit: int | None = None
    length: int = 1024
    update_every: int = 64
    namm_checkpoint: str | None = None
    selection: str = "kappa"
    namm_cap: bool = False
    data_path: str | None = None
    task_options: dict[str, Any] = field(default_factory=dict)
    protocol: str = "scheduled"
    evict: str = "schedule"
    max_new_tokens: int | None = None
    chat_template: str = "auto"
    policy_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    device: str = "auto"
    dtype: str = "fp32"
    share_prefix: bool = True
    batch_size: int = 1

    def __post_init__(self) -> None:
        from .adapters.base import default_model
        from .tasks import TASKS, with_options

        self.model = self.model or default_model(self.adapter)
        placement(self.device, self.dtype)  # an unknown or unavailable device or dtype is named

        for name in self.tasks:
            with_options(TASKS.get(name)(), self.task_options)  # unknown options and bad values are named
        specs = self.specs
        for spec in specs:
            spec.policy_class().check_update_every(self.update_every)
        for seed in self.seeds:
            if int(seed) < 0:
                raise ValueError(f"seeds must be >= 0, got {seed}")
        self.cache_sizes = [parse_cache_size(size)[0] for size in self.cache_sizes]
        relative = any(isinstance(size, str) for size in self.cache_sizes)
        if self.adapter.startswith("decision") and (self.protocol != "scheduled" or relative):
            raise ValueError(f"adapter {self.adapter!r} runs episodes with no context or question to separate: "
                             "it takes --protocol scheduled and cache sizes in tokens")
        if self.chat_template not in CHAT_TEMPLATES:
            raise ValueError(f"chat_template must be one of {', '.join(CHAT_TEMPLATES)}, got {self.chat_template!r}")
        if self.max_new_tokens is not None and self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be > 0, got {self.max_new_tokens}")
        for name in self.policy_options:
            if name not in {spec.name for spec in specs}:
                raise ValueError(f"policy_options names policy {name!r}, which the sweep does not run")
        seen: dict[str, PolicySpec] = {}
        for spec in specs:  # bad fields and a bad checkpoint are named before any episode runs
            options = RunSpec(spec, None).options(self, 0)
            create_policy(spec.name, **options)
            twin = seen.setdefault(spec.title(options), spec)
            if twin is not spec:
                raise ValueError(f"policies {twin} and {spec} would share the label {spec.title(options)!r} in "
                                 "reports: give one of them label=NAME")
        if any(spec.policy_class().budget_rule == "required" for spec in specs) and not self.cache_sizes:
            raise ValueError("budgeted policies need at least one --cache-size")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"limit must be > 0, got {self.limit}")
        if not self.tasks or not self.policies or not self.seeds:
            raise ValueError("a sweep needs at least one task, one policy and one seed")
        if self.length <= 0:
            raise ValueError(f"length must be > 0 tokens, got {self.length}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 episodes, got {self.batch_size}")
        MemoryConfig(update_every=self.update_every, protocol=self.protocol, evict=self.evict)  # validates them

    def settings(self, seed: int) -> EpisodeSettings:
        """How this sweep runs each episode of ``seed``."""
        return EpisodeSettings(
            adapter=self.adapter, model=self.model, seed=seed, length=self.length, update_every=self.update_every,
            protocol=self.protocol, evict=self.evict, max_new_tokens=self.max_new_tokens,
            chat_template=self.chat_template, device=self.device, dtype=self.dtype, task_options=self.task_options)

    @property
    def specs(self) -> list[PolicySpec]:
        """``policies`` as :class:`PolicySpec` (the field keeps what was given: rows record it as is)."""
        return [PolicySpec.parse(value, f"policies[{index}]") for index, value in enumerate(self.policies)]


@dataclass(frozen=True)
class RunSpec:
    """One (policy, cache size) cell of the sweep."""

    spec: PolicySpec
    cache_size: int | str | None

    @property
    def policy(self) -> str:
        """The registered policy name (the rows' ``policy`` field)."""
        return self.spec.name

    def options(self, config: SweepConfig, seed: int) -> dict[str, Any]:
        """The policy's fields: the sweep's ``namm_checkpoint``/``selection`` and the episode seed for the
        policies with such fields (the NAMM's ``checkpoint``/``selection``, the random policy's ``seed``),
        then the spec's options, then ``policy_options``."""
        defaults = {"checkpoint": config.namm_checkpoint, "selection": config.selection, "seed": seed}
        return {**self.spec.resolved(defaults), **config.policy_options.get(self.policy, {})}

    def resolved(self, config: SweepConfig, seed: int) -> PolicySpec:
        """The cell's policy spec with every option filled in (:meth:`options`)."""
        return PolicySpec(self.policy, self.options(config, seed), self.spec.label)


def expand(config: SweepConfig) -> list[RunSpec]:
    """The (policy, cache size) cells of a sweep, in a stable order."""
    cells = []
    for spec in config.specs:
        rule = spec.policy_class().budget_rule
        if rule == "required":
            cells.extend(RunSpec(spec, size) for size in config.cache_sizes)
        else:
            cells.append(RunSpec(spec, None))
            if rule == "cap" and config.namm_cap:
                cells.extend(RunSpec(spec, size) for size in config.cache_sizes)
    return cells


def checkpoint_digest(checkpoint: str | None) -> str | None:
    """The sha256 of a NAMM checkpoint's tensors, read from its sidecar (None for θ = 0)."""
    if checkpoint is None:
        return None
    return _digest(str(Path(checkpoint).resolve()))


@functools.cache
def _digest(checkpoint: str) -> str:
    from .namm.checkpoint import checkpoint_paths

    return json.loads(checkpoint_paths(checkpoint)[1].read_text())["tensors_sha256"]


def row_key(config: SweepConfig, spec: RunSpec, task, seed: int, episode_id: str) -> str:
    """Everything that determines a row's result, hashed (timings, provenance and paths excluded).

    ``task``: the task (its name and ``version``; a version above 1 enters the key, so rows written
    before a task had versions keep resuming)."""
    options = spec.options(config, seed)
    if "checkpoint" in options:
        options = {**options, "checkpoint": checkpoint_digest(options["checkpoint"])}
    parts = {
        "adapter": config.adapter, "model": config.model, "task": task.name, "seed": seed, "episode": episode_id,
        "policy": spec.policy, "cache_size": spec.cache_size, "length": config.length,
        "update_every": config.update_every, "options": options, "task_options": config.task_options,
    }
    if task.version != 1:
        parts["task_version"] = task.version
    if spec.spec.label:  # a labelled variant is its own cell; unlabelled rows keep their keys
        parts["label"] = spec.spec.label
    parts.update(placement(config.device, config.dtype))  # empty on cpu/fp32: older rows keep resuming
    parts.update({name: value for name, value in config.settings(seed).prompt_settings().items()  # defaults
                  if value != PROMPT_DEFAULTS[name]})  # stay out: rows written before these settings keep resuming
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


@dataclass
class SweepSummary:
    """What :func:`run_sweep` did.

    Attributes:
        written: rows appended by this run. cells: episodes × (policy, cache size) cells of the sweep.
        failed: the sweep's error rows (this run's and earlier runs' not retried), newest per key.
        log: where failed episodes' tracebacks are (``<results stem>.errors.log``).
    """

    written: int
    cells: int
    failed: list[dict[str, Any]]
    log: Path


def error_log_path(out: Path) -> Path:
    """The file beside results ``out`` that holds failed episodes' tracebacks."""
    return out.with_name(f"{out.stem}.errors.log")


def run_sweep(config: SweepConfig, out: Path, adapter=None, console: Console | None = None,
              retry_errors: bool = False) -> SweepSummary:
    """Run every missing episode of ``config``, appending rows to ``out`` (``retry_errors``: run failed
    episodes again). Holds ``out``'s sweep lock throughout; a results file this run created and left empty
    is removed."""
    existed = out.exists()
    check_writable(out)
    try:
        with sweep_lock(out):
            return _run_locked(config, out, adapter, console or Console(stderr=True), retry_errors)
    finally:
        if not existed and out.exists() and out.stat().st_size == 0:
            out.unlink()


def _run_locked(config: SweepConfig, out: Path, adapter, console: Console, retry_errors: bool) -> SweepSummary:
    from .adapters.base import create_adapter

    latest = {row["key"]: row for row in read_rows(out) if "key" in row}
    done = {key for key, row in latest.items() if not (retry_errors and row.get("status") != "ok")}
    adapter = adapter or create_adapter(config.adapter, config.model, **placement(config.device, config.dtype))
    cells, work = _plan(config, adapter)
    work = [item for item in work if item[-1] not in done]
    base = {"provenance": provenance(), "config": {**asdict(config), "namm_checkpoint": portable_path(
        config.namm_checkpoint), "data_path": portable_path(config.data_path)}}
    log = error_log_path(out)
    with _Reporter(console, len(work), config) as reporter:
        for (task, seed, episode, spec, key), result, batch in _results(config, adapter, work, reporter):
            if result.traceback is not None:
                with open(log, "a", encoding="utf-8") as handle:
                    handle.write(f"--- {task.name} {cell_name(spec)} seed {seed} episode {episode.episode_id} "
                                 f"({time.strftime('%Y-%m-%d %H:%M:%S')})\n{result.traceback}\n")
            row = {**result.as_dict(), "key": key, "batch_size": batch, **base}
            append_row(out, row)
            latest[key] = row
            reporter.finished(task, seed, episode, spec, row, log)
    logger.info("wrote %d rows to %s (%d already done)", len(work), out, len(done))
    failed = [latest[key] for key in cells if key in latest and latest[key].get("status") != "ok"]
    return SweepSummary(written=len(work), cells=len(cells), failed=failed, log=log)


def _results(config: SweepConfig, adapter, work: list[tuple], reporter: _Reporter) -> Iterator[tuple]:
    """Each work item with its row and the size of its batch: one episode at a time, each episode's
    one-shot prefix read once for its cells, or ``batch_size`` episodes of a cell at a time."""
    if config.batch_size > 1:
        yield from run_batches(adapter, config, work, reporter.start)
        return
    for (task, seed, episode), items in itertools.groupby(work, key=lambda item: item[:3]):
        items = list(items)
        specs = [spec.resolved(config, seed) for *_, spec, _ in items]
        prefix = (read_shared_prefix(adapter, episode, specs, config.settings(seed))
                  if config.share_prefix and len(items) > 1 else None)
        for item, resolved in zip(items, specs):
            reporter.start(task, item[3])
            yield item, run_episode(adapter, task, episode, resolved, item[3].cache_size, config.settings(seed),
                                    prefix), 1
        if prefix is not None:
            prefix.release()


def _plan(config: SweepConfig, adapter) -> tuple[list[str], list[tuple]]:
    """Every cell's key and the work items ``(task, seed, episode, spec, key)``; checks each task against
    the adapter (modality, then the adapter's own ``check(episode, policy)``) before any episode runs."""
    from .tasks import TASKS, TaskContext, TaskDataError, with_options
    from .tasks.base import options_for

    specs = expand(config)
    keys, work = [], []
    for task_name in config.tasks:
        task = with_options(TASKS.get(task_name)(), config.task_options)
        modality = getattr(adapter, "modality", task.modality)
        if task.modality != modality:
            raise ValueError(f"task {task_name!r} is a {task.modality} task; adapter {config.adapter!r} runs "
                             f"{modality} tasks (give --adapter {task.modality})")
        for seed in config.seeds:
            context = TaskContext(tokenizer=getattr(adapter, "tokenizer", None), length=config.length, seed=seed,
                                  limit=config.limit, data_path=Path(config.data_path) if config.data_path else None,
                                  options=options_for(task_name, config.task_options))
            episodes = task.episodes(context)
            if not episodes:
                data = getattr(task, "data_file", None) or config.data_path
                source = f" from {data}" if data else ""
                raise TaskDataError(f"task {task_name!r} gave no episodes{source} (an empty data file?)")
            check = getattr(adapter, "check", None)
            for spec in specs if check is not None else ():
                check(episodes[0], spec.policy)
            for episode in episodes:
                for spec in specs:
                    key = row_key(config, spec, task, seed, episode.episode_id)
                    keys.append(key)
                    work.append((task, seed, episode, spec, key))
    return keys, work


def cell_name(spec: RunSpec) -> str:
    """``h2o@128`` (policy spec or its label @ tokens per head) or ``full`` for self-sized policies."""
    name = spec.spec.label or str(spec.spec)
    return name if spec.cache_size is None else f"{name}@{spec.cache_size}"


class _Reporter:
    """Progress: a bar naming the running task and cell on a terminal; without one (CI, nohup) one line
    per finished episode. A failed episode is always one line naming it, its error and the traceback log."""

    def __init__(self, console: Console, total: int, config: SweepConfig) -> None:
        self.console, self.total, self.done = console, total, 0
        self.prefix = f"{config.adapter}/{config.model}"
        self.bar = None
        if console.is_terminal:
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TimeRemainingColumn())
            self.progress = Progress(*columns, console=console)
        else:
            self.progress = None

    def __enter__(self) -> Self:
        if self.progress is not None:
            self.progress.__enter__()
            self.bar = self.progress.add_task(self.prefix, total=self.total)
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def start(self, task, spec: RunSpec) -> None:
        if self.progress is not None:
            self.progress.update(self.bar, description=f"{self.prefix} {task.name} {cell_name(spec)}")

    def finished(self, task, seed: int, episode, spec: RunSpec, row: dict[str, Any], log: Path) -> None:
        self.done += 1
        where = f"{task.name} {cell_name(spec)} seed {seed} episode {episode.episode_id}"
        if row["status"] != "ok":
            self._line(f"failed: {where}: {row['error']} (traceback in {log})")
        elif self.progress is None:
            self._line(f"[{self.done}/{self.total}] {where}: {task.metric} {row['score']:.3f} "
                       f"({row['wall_seconds']:.1f} s)")
        if self.progress is not None:
            self.progress.advance(self.bar)

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)
