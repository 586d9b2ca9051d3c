"""A fast, deterministic stand-in for the model-backed FitnessEvaluator (the loop sees the same API)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from namm_suite.evolution import EpisodeResult, EvolutionConfig, Stage, run_evolution
from namm_suite.namm.features import RunningStats
from namm_suite.tasks.base import Episode


class FakeEvaluator:
    """Score of an episode = a smooth function of θ and the episode, kept tokens shrink with θ[0]."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.group_sizes: list[int] = []  # members per members() call (batch_members groups)

    def pool(self, task: str) -> list[Episode]:
        return [Episode(task, f"{task}-{i}", {"i": i}, ("x",)) for i in range(6)]

    def full(self, episode: Episode) -> EpisodeResult:
        return EpisodeResult(1.0, 100.0)

    def member(self, theta, mu, var, episodes) -> list[EpisodeResult]:
        time.sleep(self.delay)
        theta = np.asarray(theta)
        out = []
        for e in episodes:
            target = 0.05 * (1 + e.inputs["i"] % 3)
            score = float(np.exp(-np.sum((theta[:8] - target) ** 2) * 10))
            out.append(EpisodeResult(score, 100.0 / (1.0 + np.exp(theta[0] * 10))))
        return out

    def members(self, thetas, mu, var, episodes) -> list[list[EpisodeResult]]:
        self.group_sizes.append(len(thetas))
        return [self.member(theta, mu, var, episodes) for theta in np.atleast_2d(thetas)]

    def statistics(self, episodes) -> RunningStats:
        stats = RunningStats(17)
        stats.update(torch.arange(34, dtype=torch.float32).view(2, 17))
        return stats


def fake_config(**overrides) -> EvolutionConfig:
    base = {"stages": [Stage("one", ["a"], 3), Stage("two", ["b"], 3)], "population": 6, "episodes_per_task": 3,
            "pool_size": 6, "eval_every": 2, "seed": 7, "cache_penalty": 0.1}
    base.update(overrides)
    return EvolutionConfig(**base)


if __name__ == "__main__":  # used by the SIGKILL test: python -m tests.fake_evolution OUT_DIR [BATCH_MEMBERS]
    from namm_suite.evolution.backends import InProcessBackend

    evaluator = FakeEvaluator(delay=0.15)
    config = fake_config(batch_members=int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    run_evolution(config, Path(sys.argv[1]), evaluator=evaluator, backend=InProcessBackend(evaluator))
