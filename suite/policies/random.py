"""Random eviction: the floor any memory policy must beat."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .base import PolicyView, ScoredPolicy, register_policy


@register_policy("random")
@dataclass
class RandomPolicy(ScoredPolicy):
    """Keep a uniformly random subset of tokens (seeded, reproducible).

    Attributes:
        seed: seed of the generator, re-applied at every ``reset`` so each sequence is reproducible.
    """

    seed: int = 0
    _generator: torch.Generator = field(default_factory=torch.Generator, init=False, repr=False)

    def __post_init__(self) -> None:
        self._generator.manual_seed(self.seed)

    def reset(self, n_layers: int) -> None:
        self._generator.manual_seed(self.seed)

    def score(self, view: PolicyView) -> torch.Tensor:
        noise = torch.rand(view.valid.shape, generator=self._generator)
        return noise.to(view.keys.device)
