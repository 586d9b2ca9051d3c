"""``namm run --batch-size N``: a sweep cell's episodes answered N at a time.

The runner's work items are grouped by (task, seed, policy cell) in their order and cut into batches of up
to N episodes; each batch runs through the adapter's ``run_batch`` (the language adapter's
:mod:`~namm_suite.adapters.language_batch`), every episode under its own memory manager, so its answer,
score and memory statistics are those of running it alone, a relative budget ("25%") included. A row's
``wall_seconds`` (and the adapter's prefill/decode seconds) are its share of the batch's time. A batch that
fails is run again one episode at a time, so that a bad episode fails alone with its own error. One-shot
protocols do not share prefixes across cells here (batching is across the episodes of one cell).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from .episode import ResultRow, run_episode
from .manager import MemoryManager

logger = logging.getLogger(__name__)


def run_batches(adapter, config, work: list[tuple], start: Callable[[Any, Any], None]
                ) -> Iterator[tuple[tuple, ResultRow, int]]:
    """Each work item ``(task, seed, episode, cell, key)`` of a sweep (``config``: its
    :class:`~namm_suite.runner.SweepConfig`) with its row and the size of the batch it ran in;
    ``start(task, cell)`` is called before each batch."""
    if not hasattr(adapter, "run_batch"):
        raise ValueError(f"adapter {config.adapter!r} runs one episode at a time: give batch_size 1")
    cells: dict[tuple[int, int, int], list[tuple]] = {}  # (task, seed, cell) -> its items, in the work's order
    for item in work:
        cells.setdefault((id(item[0]), item[1], id(item[3])), []).append(item)
    for items in cells.values():
        task, seed, _, cell, _ = items[0]
        for first in range(0, len(items), config.batch_size):
            batch = items[first:first + config.batch_size]
            start(task, cell)
            rows = batch_rows(adapter, task, [item[2] for item in batch], cell.resolved(config, seed),
                              cell.cache_size, config.settings(seed))
            yield from ((item, row, len(batch)) for item, row in zip(batch, rows, strict=True))


def batch_rows(adapter, task, episodes: list, spec, budget: int | str | None, settings) -> list[ResultRow]:
    """The rows of ``episodes`` of ``task`` under policy ``spec`` (options complete) with ``budget``,
    answered in one batch (:func:`~namm_suite.episode.run_episode`'s rows, but for the times)."""
    begin = time.perf_counter()
    try:
        managers = [MemoryManager(spec.create(), settings.memory_config(budget)) for _ in episodes]
        predictions = adapter.run_batch([settings.apply(episode) for episode in episodes], managers)
    except Exception:  # each episode alone: the ones that work get their rows, a bad one its own error
        logger.info("a batch of %d episodes failed; running them one at a time", len(episodes), exc_info=True)
        return [run_episode(adapter, task, episode, spec, budget, settings) for episode in episodes]
    share = (time.perf_counter() - begin) / len(episodes)
    return [dataclasses.replace(run_episode(_Answered(prediction), task, episode, spec, budget, settings),
                                wall_seconds=share)
            for episode, prediction in zip(episodes, predictions, strict=True)]


class _Answered:
    """An adapter stand-in whose ``run`` returns a prediction made in a batch, so that the row is built and
    scored exactly as :func:`~namm_suite.episode.run_episode` builds and scores every row."""

    def __init__(self, prediction) -> None:
        self.prediction = prediction

    def run(self, episode, manager):
        return self.prediction
