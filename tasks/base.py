"""Tasks: a registry of named tasks that yield typed :class:`Episode`s and score predictions.

A task is data plus a metric. Synthetic tasks generate episodes from a seed at a target length measured in
the model's own tokens; loader tasks read local files in their published formats. Adapters turn an episode
into model calls; the runner never looks inside ``inputs``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from namm_suite.registry import Registry

TASKS: Registry[type[Task]] = Registry("task")


def register_task(name: str):
    """Class decorator registering a :class:`Task` subclass under ``name``."""

    def decorator(cls: type[Task]) -> type[Task]:
        cls.name = name
        return TASKS.register(name)(cls)

    return decorator


@dataclass(frozen=True)
class Episode:
    """One evaluation item.

    Attributes:
        task: registered task name.
        episode_id: stable id, unique within the task for a given :class:`TaskContext` (used as a results key).
        inputs: modality-specific inputs. Language: ``{"prompt": str, "chat": bool}``.
        references: acceptable answers (the metric decides how they are used).
        max_new_tokens: answer budget for generative tasks.
        metadata: anything worth keeping in the results row (length, depth, source line, ...).
    """

    task: str
    episode_id: str
    inputs: dict[str, Any]
    references: tuple[str, ...]
    max_new_tokens: int = 32
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskContext:
    """What a task may need to build its episodes.

    Attributes:
        tokenizer: the model's tokenizer (lengths are measured in its tokens); None for non-text tasks.
        length: target prompt length in tokens for synthetic tasks; truncation window for loaders.
        seed: episodes are a pure function of (task, context); the same seed gives the same episodes.
        limit: at most this many episodes (None = all).
        data_path: local data file or folder for loader tasks.
        options: task-specific parameters (e.g. ``depths``, ``n_keys``).
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
    ``metric`` (name of the metric), ``source`` (where the data comes from).
    """

    name: str = "task"
    modality: str = "language"
    metric: str = ""
    source: str = ""

    @abstractmethod
    def episodes(self, context: TaskContext) -> list[Episode]:
        """The task's episodes for ``context`` (deterministic)."""

    @abstractmethod
    def score(self, prediction: str, episode: Episode) -> float:
        """Score in [0, 1] (or the metric's natural range) of ``prediction`` against ``episode``."""
