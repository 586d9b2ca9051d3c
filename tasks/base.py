"""Tasks: a registry of named tasks that yield typed :class:`Episode`s and score predictions.

A task is data plus a metric. Synthetic tasks generate episodes from a seed at a target length measured in
the model's own tokens; loader tasks read local files in their published formats. Adapters turn an episode
into model calls; the runner never looks inside ``inputs``.

Bad input (a malformed data or task file, a missing field, an unknown task or option) raises
:class:`TaskDataError`, whose message names the file, the line and the field.
"""

from __future__ import annotations

import dataclasses
import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from namm_suite.registry import Registry, UnknownNameError

from .metrics import score_episode


class TaskDataError(ValueError):
    """Bad task input: ``"<path>:<line>: field '<field>': <message>"`` (location parts only when known).

    Attributes:
        path / line / field: where the problem is (line numbers start at 1); None when not applicable.
    """

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.path, self.line, self.field, self.message = path, line, field, message
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        elif line is not None:
            where = f"line {line}: "
        what = f"field {field!r}: " if field is not None else ""
        super().__init__(f"{where}{what}{message}")


class UnknownTaskError(TaskDataError, UnknownNameError):
    """An unregistered task name; the message says "did you mean" and lists the valid names.

    It is both a :class:`TaskDataError` (a ``ValueError``) and the registry's ``KeyError``.
    """

    def __init__(self, message: str) -> None:
        TaskDataError.__init__(self, message)


class TaskRegistry(Registry["type[Task]"]):
    """The task registry: unknown names raise :class:`UnknownTaskError`."""

    def get(self, name: str) -> type[Task]:
        try:
            return super().get(name)
        except UnknownNameError as error:
            raise UnknownTaskError(str(error)) from None


TASKS: TaskRegistry = TaskRegistry("task")
#: packages whose import registers the built-in tasks; imported on the registry's first lookup, together
#: with the benchmark YAML files (``language/benchmarks.py``), so importing ``tasks`` reads no YAML.
TASK_MODULES = ("namm_suite.tasks.language", "namm_suite.tasks.video", "namm_suite.tasks.decision")


def _load_builtin_tasks() -> None:
    for module in TASK_MODULES:
        importlib.import_module(module)
    importlib.import_module("namm_suite.tasks.language.benchmarks").register_benchmarks()


TASKS.add_loader(_load_builtin_tasks)


def register_task(name: str):
    """Class decorator registering a :class:`Task` subclass under ``name`` (its ``name`` attribute)."""
    return TASKS.register_class(name)


@dataclass(frozen=True)
class Episode:
    """One evaluation item.

    Attributes:
        task: registered task name.
        episode_id: stable id, unique within the task for a given :class:`TaskContext` (used as a results key).
        inputs: modality-specific inputs. Language: ``{"prompt": str, "chat": bool}`` and, where the task
            separates them, ``context`` (the context exactly as it appears in ``prompt``: the prompt up to its
            end is the part a ``context`` protocol compresses), ``question`` (the question alone) and ``cue``
            (the answer cue that ends ``prompt``, e.g. ``"Answer:"``, put after the assistant header in
            chat layouts). Video: ``video``, ``frames`` and ``question`` (the frames are the context).
        references: acceptable answers (the metric decides how they are used).
        max_new_tokens: answer budget for generative tasks.
        metadata: anything worth keeping in the results row (length, depth, source line, ...).
        scoring: what the metric needs besides ``references`` (e.g. LongBench's ``all_classes``); kept out of
            the results row.
        error: why the episode could not be built (a bad annotation record, naming file, record and
            field), else None; adapters refuse such an episode (:meth:`check`), so the runner records an
            error row and the sweep goes on.
    """

    task: str
    episode_id: str
    inputs: dict[str, Any]
    references: tuple[str, ...]
    max_new_tokens: int = 32
    metadata: dict[str, Any] = field(default_factory=dict)
    scoring: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def check(self) -> None:
        """Raise :class:`TaskDataError` with :attr:`error` when the episode could not be built."""
        if self.error is not None:
            raise TaskDataError(self.error)


@dataclass
class TaskContext:
    """What a task may need to build its episodes.

    Attributes:
        tokenizer: the model's tokenizer (lengths are measured in its tokens); None for non-text tasks.
        length: target prompt length in tokens for synthetic tasks; truncation window for loaders.
        seed: episodes are a pure function of (task, context); the same seed gives the same episodes.
        limit: at most this many episodes (None = all).
        data_path: local data file or folder for loader tasks.
        options: task parameters (e.g. ``depths``), possibly scoped by task name; see :func:`with_options`.
    """

    tokenizer: Any = None
    length: int = 1024
    seed: int = 0
    limit: int | None = None
    data_path: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    """A named task: ``episodes(context)`` and ``score(prediction, episode)``.

    Class attributes (shown by ``namm tasks``): ``modality`` ("language", "video", "decision"),
    ``metric`` (a name in :data:`~namm_suite.tasks.metrics.METRICS`), ``source`` (where the data comes from), ``description`` (one line;
    the docstring's first line when empty). ``version``: bump it when the task's episodes or scoring
    change, so a sweep does not resume from rows of the old version (it is part of the resume key).
    """

    name: str = "task"
    version: ClassVar[int] = 1
    modality: str = "language"
    metric: str = ""
    source: str = ""
    description: str = ""

    @abstractmethod
    def episodes(self, context: TaskContext) -> list[Episode]:
        """The task's episodes for ``context`` (deterministic)."""

    def score(self, prediction: str, episode: Episode) -> float:
        """Score in [0, 1] (or the metric's natural range) of ``prediction`` against ``episode``: by default
        the registered metric ``self.metric`` (:func:`~namm_suite.tasks.metrics.score_episode`); a task
        overrides it only when scoring needs more than the episode (an environment's return, say)."""
        return score_episode(self.metric, prediction, episode)


def options_for(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options of ``options`` that apply to task ``name``: unscoped keys, then its own scoped entry."""
    own = {key: value for key, value in options.items() if key not in TASKS}
    scoped = options.get(name)
    if isinstance(scoped, dict):
        own.update(scoped)
    return own


def with_options(task: Task, options: dict[str, Any]) -> Task:
    """``task`` with ``options`` (``TaskContext.options``) applied to its dataclass fields.

    A key that names a registered task scopes its (mapping) value to that task, so one options mapping can
    serve a sweep over several tasks: with ``{"passkey": {"depths": [0.5]}, "kv_retrieval": {"depths":
    [0.1]}}`` each task takes its own entry and ignores the other's. Unscoped keys apply to every task
    (scoped values win). The task's ``__post_init__`` validates the values; an option that is not one of
    its fields raises :class:`TaskDataError` listing the valid ones (loader tasks take none).
    """
    own = options_for(task.name, options)
    if not own:
        return task
    names = [f.name for f in dataclasses.fields(task)] if dataclasses.is_dataclass(task) else []
    for key in own:
        if key not in names:
            valid = ", ".join(names) if names else "none"
            raise TaskDataError(f"unknown option for task {task.name!r}; valid options: {valid}", field=key)
    try:
        return dataclasses.replace(task, **own)
    except TypeError as err:  # a value of the wrong type reaching __post_init__'s comparisons
        raise TaskDataError(f"bad option value for task {task.name!r} ({err}); options: {own}") from None


@dataclass(frozen=True)
class TaskSpec:
    """What ``namm tasks`` prints for one registered task."""

    name: str
    modality: str
    metric: str
    source: str
    description: str


def describe_tasks() -> list[TaskSpec]:
    """Every registered task, sorted by name (loaders list their data source; nothing is read)."""
    specs = []
    for name in TASKS.names():
        cls = TASKS.get(name)
        description = cls.description or (cls.__doc__ or "").strip().split("\n")[0]
        specs.append(TaskSpec(name, cls.modality, cls.metric, cls.source, description))
    return specs
