"""TOVA: keep the tokens the newest query attends to most (Oren et al., "Transformers are Multi-State
RNNs", 2024)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import PolicyView, ScoredPolicy, register_policy


@register_policy("tova")
@dataclass
class TovaPolicy(ScoredPolicy):
    """Keep the tokens with the highest attention from the last query (TOVA)."""

    needs_attention = True
    attention_rows = 1

    def score(self, view: PolicyView) -> torch.Tensor:
        return view.attn[:, :, -1]
