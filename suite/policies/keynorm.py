"""Key-norm eviction: tokens whose keys have a low L2 norm draw the most attention
(Devoto et al., "A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression", EMNLP 2024)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import PolicyView, ScoredPolicy, register_policy


@register_policy("keynorm")
@dataclass
class KeyNormPolicy(ScoredPolicy):
    """Keep the tokens with the lowest key L2 norm (no attention needed)."""

    def score(self, view: PolicyView) -> torch.Tensor:
        return -view.keys.float().norm(dim=-1)
