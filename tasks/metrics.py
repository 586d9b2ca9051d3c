"""The one metric registry: every task's ``metric`` names an entry of :data:`METRICS`.

A metric scores one prediction. Two kinds share the registry:

- **per reference** (the default): ``fn(prediction, reference, all_classes=None) -> float``, scored against
  each of the episode's ``references`` and maximised over them, as LongBench's ``scorer`` does
  (:func:`best_score`); the long-context text metrics live in :mod:`.language.metrics`.
- **per episode** (``per_reference=False``): ``fn(prediction, labels) -> float`` over the episode's raw
  labels (``episode.scoring["labels"]``, else its references), e.g. InfiniteBench's scorers.

:func:`score_episode` applies either kind to an :class:`~.base.Episode`; ``Task.score`` uses it unless a task
needs more (LongBench's first-line cut; the decision tasks, whose ``d4rl_normalised_return`` needs the
environment's reference returns and so is computed by the task). The registry fills on first lookup with the
built-in metric modules (:data:`METRIC_MODULES`), so importing it imports none of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from namm_suite.registry import Registry

#: modules whose import registers the built-in metrics (loaded on the first lookup).
METRIC_MODULES = ("namm_suite.tasks.language.metrics", "namm_suite.tasks.language.infinitebench",
                  "namm_suite.tasks.video.prompts")


@dataclass(frozen=True)
class Metric:
    """A registered metric: ``fn`` and how it meets an episode's references (see the module docstring)."""

    fn: Callable[..., float]
    per_reference: bool = True

    def __call__(self, *args: Any, **kwargs: Any) -> float:
        return self.fn(*args, **kwargs)


METRICS: Registry[Metric] = Registry("metric")
METRICS.add_loader(lambda: [importlib.import_module(module) for module in METRIC_MODULES])


def metric(name: str, per_reference: bool = True) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Decorator registering ``fn`` under ``name``; returns ``fn`` unchanged."""

    def decorator(fn: Callable[..., float]) -> Callable[..., float]:
        METRICS.register(name)(Metric(fn, per_reference))
        return fn

    return decorator


def best_score(name: str, prediction: str, references: Sequence[str],
               all_classes: Sequence[str] | None = None) -> float:
    """Maximum of the per-reference metric ``name`` over ``references`` (0.0 when there are none)."""
    fn = METRICS.get(name)
    return max([0.0] + [float(fn(prediction, ref, all_classes=all_classes)) for ref in references])


def score_episode(name: str, prediction: Any, episode: Any) -> float:
    """Metric ``name`` of ``prediction`` for ``episode`` (an :class:`~.base.Episode`)."""
    entry = METRICS.get(name)
    if entry.per_reference:
        return best_score(name, prediction, episode.references, episode.scoring.get("all_classes"))
    return float(entry(prediction, episode.scoring.get("labels", list(episode.references))))
