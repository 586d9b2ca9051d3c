"""Where fitness evaluations run: in-process, a local process pool (default) or a Ray cluster.

Every backend maps the same function, :func:`evaluate_members`, over groups of population members (one
group of ``batch_members`` is one batched evaluation); each worker builds one :class:`FitnessEvaluator`
(one model load) and reuses it for every call.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch

from .config import EvolutionConfig
from .fitness import EpisodeResult, FitnessEvaluator

_WORKER: FitnessEvaluator | None = None


def _init_worker(config: EvolutionConfig, threads: int) -> None:
    global _WORKER
    torch.set_num_threads(threads)
    _WORKER = FitnessEvaluator(config)


def evaluate_members(args: tuple[Any, Any, Any, list]) -> list[list[EpisodeResult]]:
    """Worker entry point: ``(thetas [R, 4172], mu, var, episodes)`` → results per member, on the worker's
    evaluator."""
    thetas, mu, var, episodes = args
    return _WORKER.members(thetas, mu, var, episodes)


class InProcessBackend:
    """Evaluates member groups one after the other in this process (``workers: 1``)."""

    def __init__(self, evaluator: FitnessEvaluator) -> None:
        self.evaluator = evaluator

    def map(self, calls: Sequence[tuple]) -> list[list[list[EpisodeResult]]]:
        return [self.evaluator.members(*call) for call in calls]

    def close(self) -> None:
        pass


class ProcessPoolBackend:
    """A local pool of ``workers`` processes, each with its own copy of the model and a share of the cores."""

    def __init__(self, config: EvolutionConfig) -> None:
        threads = max(1, (os.cpu_count() or 1) // config.workers)
        self.pool = ProcessPoolExecutor(config.workers, initializer=_init_worker, initargs=(config, threads))

    def map(self, calls: Sequence[tuple]) -> list[list[list[EpisodeResult]]]:
        return list(self.pool.map(evaluate_members, calls))

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


class RayBackend:
    """``workers`` Ray actors, each holding one evaluator (``pip install namm-suite[ray]``)."""

    def __init__(self, config: EvolutionConfig) -> None:
        try:
            import ray
        except ImportError:
            raise RuntimeError("the ray backend needs `pip install namm-suite[ray]`") from None
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=config.address, num_cpus=None if config.address else config.workers,
                     include_dashboard=False, log_to_driver=False)

        @ray.remote
        class Worker:
            def __init__(self, cfg: EvolutionConfig) -> None:
                _init_worker(cfg, 1)

            def evaluate(self, args: tuple) -> list[list[EpisodeResult]]:
                return evaluate_members(args)

        self.actors = [Worker.remote(config) for _ in range(config.workers)]

    def map(self, calls: Sequence[tuple]) -> list[list[list[EpisodeResult]]]:
        pending = [self.actors[i % len(self.actors)].evaluate.remote(call) for i, call in enumerate(calls)]
        return self.ray.get(pending)

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)


def make_backend(config: EvolutionConfig, evaluator_factory: Callable[[], FitnessEvaluator]):
    """The backend the config asks for; ``workers: 1`` with the local backend runs in-process."""
    if config.backend == "ray":
        return RayBackend(config)
    if config.workers == 1:
        return InProcessBackend(evaluator_factory())
    return ProcessPoolBackend(config)
