"""Fitness of NAMM parameter vectors: run the frozen model with a NAMM on sampled episodes (docs/namm-spec.md
§8).

One :class:`FitnessEvaluator` lives in each worker and loads the model once. Scores are normalised per
task by the full-cache score of the base model on the same episodes, computed once and cached.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..episode import answer_and_score
from ..manager import MemoryConfig, MemoryManager
from ..namm.features import RunningStats
from ..policies import REFERENCE, create_policy
from ..policies.namm import NammPolicy, full_cache_statistics
from .config import EvolutionConfig


def member_policy(config: EvolutionConfig) -> NammPolicy:
    """A NAMM (θ = 0, no statistics) with the run's eviction rule, pooling width and γ: what every member,
    and every checkpoint the run saves, is built on."""
    return NammPolicy(selection=config.selection, kernel=config.kernel, gamma=config.gamma)


@dataclass
class EpisodeResult:
    """Score and mean kept tokens per head of one episode under one policy."""

    score: float
    mean_kept: float


class FitnessEvaluator:
    """Runs episodes with the full cache or with a NAMM of given parameters (one model per process)."""

    def __init__(self, config: EvolutionConfig, adapter=None) -> None:
        from ..adapters.base import create_adapter
        from ..device import placement

        self.config = config
        self.adapter = adapter or create_adapter(config.adapter, config.model,
                                                 **placement(config.device, config.dtype))
        self._tasks: dict[str, object] = {}

    def task(self, name: str):
        from ..tasks import TASKS

        if name not in self._tasks:
            self._tasks[name] = TASKS.get(name)()
        return self._tasks[name]

    def pool(self, task_name: str, seed: int | None = None, size: int | None = None) -> list:
        """The task's episode pool: ``size`` episodes generated from ``seed`` (the training pool by default)."""
        from ..tasks import TaskContext

        cfg = self.config
        context = TaskContext(tokenizer=getattr(self.adapter, "tokenizer", None), length=cfg.length,
                              seed=cfg.train_seed if seed is None else seed, limit=size or cfg.pool_size,
                              options=dict(cfg.task_options))
        return self.task(task_name).episodes(context)

    def run(self, episode, policy) -> EpisodeResult:
        """One episode under ``policy``: the answer likelihood (``fitness: likelihood``, teacher forced, no
        sampling) or the task metric of the greedy answer (``fitness: metric``)."""
        manager = MemoryManager(policy, self.memory(policy))
        if self.config.fitness == "likelihood":
            prediction = self.adapter.answer_likelihood(episode, manager)
            return EpisodeResult(float(prediction.output), prediction.stats.mean_kept)
        prediction, score = answer_and_score(self.adapter, self.task(episode.task), episode, manager)
        return EpisodeResult(float(score), prediction.stats.mean_kept)

    def memory(self, policy) -> MemoryConfig:
        """The schedule of every episode; a policy that reads attention (the NAMM) is capped at
        ``budget_fraction`` of each prompt when the config asks for it."""
        fraction = self.config.budget_fraction if policy.needs_attention else None
        return MemoryConfig(update_every=self.config.update_every, budget_fraction=fraction,
                            protocol=self.config.protocol, evict=self.config.evict)

    def full(self, episode) -> EpisodeResult:
        """The base model's full-cache result on ``episode``."""
        return self.run(episode, create_policy(REFERENCE))

    def member(self, theta: np.ndarray, mu: torch.Tensor, var: torch.Tensor, episodes: list) -> list[EpisodeResult]:
        """Results of the NAMM with parameters ``theta`` (4172 floats) and frozen statistics on ``episodes``."""
        policy = member_policy(self.config)
        policy.set_vector(torch.as_tensor(np.asarray(theta), dtype=torch.float32))
        policy.set_stats(mu, var)
        return [self.run(episode, policy) for episode in episodes]

    def members(self, thetas: np.ndarray, mu: torch.Tensor, var: torch.Tensor,
                episodes: list) -> list[list[EpisodeResult]]:
        """Results of several members (``thetas`` ``[R, 4172]``) on the same ``episodes``: per member, as
        :meth:`member`. Under ``fitness: likelihood`` each episode is one batched pass with one row (and one
        θ) per member, ``batch_members`` rows at a time, the prompt before the first eviction computed once
        for all of them; otherwise members run one after the other."""
        thetas = np.atleast_2d(np.asarray(thetas))
        size = self.config.batch_members
        if size == 1 or self.config.fitness != "likelihood" or len(thetas) == 1:
            return [self.member(theta, mu, var, episodes) for theta in thetas]
        out: list[list[EpisodeResult]] = []
        for start in range(0, len(thetas), size):
            group = thetas[start:start + size]
            if len(group) == 1:
                out.append(self.member(group[0], mu, var, episodes))
                continue
            policy = member_policy(self.config)
            policy.set_vectors(torch.as_tensor(group, dtype=torch.float32))
            policy.set_stats(mu, var)
            rows = [self._batched(episode, policy, len(group)) for episode in episodes]
            out += [[row[m] for row in rows] for m in range(len(group))]
        return out

    def _batched(self, episode, policy, rows: int) -> list[EpisodeResult]:
        """One episode read by ``rows`` batch rows (one per member of ``policy``'s θ stack)."""
        prediction = self.adapter.answer_likelihood(episode, MemoryManager(policy, self.memory(policy), rows=rows))
        return [EpisodeResult(float(score), kept)
                for score, kept in zip(prediction.output, prediction.extra["mean_kept"], strict=True)]

    def statistics(self, episodes: list) -> RunningStats:
        """docs/namm-spec.md §7: μ, v of all un-standardised EMA vectors of a full-cache (θ = 0) pass."""
        return full_cache_statistics(self.run, episodes, self.config.gamma)


def normalised_fitness(member: dict[str, list[EpisodeResult]], full: dict[str, list[EpisodeResult]],
                       cache_penalty: float = 0.0) -> tuple[float, float]:
    """``(fitness, kept fraction)``.

    The spec's fitness is the mean over tasks of member mean score / (full mean score + 1e-9). With
    ``cache_penalty`` p > 0 it is multiplied by (1 − p × kept fraction), the member's mean kept tokens
    relative to the full cache's: memory savings only pay when the score is kept, and members that fail
    everywhere tie instead of being ranked by how much they forgot."""
    ratios, kept = [], []
    for task, results in member.items():
        reference = full[task]
        full_mean = sum(r.score for r in reference) / len(reference)
        ratios.append(sum(r.score for r in results) / len(results) / (full_mean + 1e-9))
        kept += [m.mean_kept / max(f.mean_kept, 1e-9) for m, f in zip(results, reference, strict=True)]
    kept_fraction = sum(kept) / len(kept)
    return sum(ratios) / len(ratios) * (1.0 - cache_penalty * kept_fraction), kept_fraction
