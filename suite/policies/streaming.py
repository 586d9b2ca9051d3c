"""StreamingLLM: attention sinks plus a window of the most recent tokens (Xiao et al., ICLR 2024)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import PolicyView, ScoredPolicy, register_policy


@register_policy("streaming")
@dataclass
class StreamingPolicy(ScoredPolicy):
    """Keep the first `sinks` tokens and the most recent ones (StreamingLLM).

    Attributes:
        sinks: number of initial "attention sink" tokens always kept, >= 0. Default 4: the StreamingLLM
            paper, also kvpress's ``StreamingLLMPress(n_sink=4)``.
    """

    sinks: int = 4

    def __post_init__(self) -> None:
        if self.sinks < 0:
            raise ValueError(f"streaming: sinks must be >= 0, got {self.sinks}")

    def score(self, view: PolicyView) -> torch.Tensor:
        recency = view.positions.float()
        return recency.masked_fill(view.positions < self.sinks, float("inf"))
