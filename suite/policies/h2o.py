"""H2O: heavy hitters (tokens with the largest accumulated attention) plus a recent window
(Zhang et al., "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of LLMs", NeurIPS 2023)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import PolicyView, ScoredPolicy, recent_tokens, register_policy


@register_policy("h2o")
@dataclass
class H2OPolicy(ScoredPolicy):
    """Keep heavy hitters by accumulated attention plus the most recent tokens (H2O).

    Attributes:
        recent_ratio: share of the budget reserved for the most recent tokens, in [0, 1]. Default 0.5: the
            H2O paper's equal split of heavy-hitter and recent tokens (its reference code's
            ``heavy_ratio = recent_ratio``).
    """

    recent_ratio: float = 0.5
    needs_attention = True
    token_state: ClassVar[dict[str, tuple[int, ...]]] = {"h2o_score": (1,)}

    def __post_init__(self) -> None:
        if not 0.0 <= self.recent_ratio <= 1.0:
            raise ValueError(f"h2o: recent_ratio must be in [0, 1], got {self.recent_ratio}")

    def score(self, view: PolicyView) -> torch.Tensor:
        accumulated = view.state["h2o_score"][..., 0] + view.attn.sum(dim=2)
        view.state["h2o_score"] = accumulated[..., None]
        n_recent = round(self.recent_ratio * view.budget)
        return accumulated.masked_fill(recent_tokens(view.positions, view.valid, n_recent), float("inf"))
