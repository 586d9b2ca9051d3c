"""TOVA: keep the tokens the newest query attends to most (Oren et al., "Transformers are Multi-State
RNNs", 2024)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import PolicyView, ScoredPolicy, register_policy


@register_policy("tova")
@dataclass
class TovaPolicy(ScoredPolicy):
    """Keep the tokens with the highest attention from the last query (TOVA).

    Attributes:
        head_average: False (default: this project's results so far) scores per KV head, from the mean of
            its query heads; True averages over every head of the layer, so all heads keep the same tokens
            (the TOVA paper and kvpress's ``TOVAPress``).
    """

    head_average: bool = False
    needs_attention = True
    attention_rows = 1

    def score(self, view: PolicyView) -> torch.Tensor:
        last = view.attn[:, :, -1]  # [B, H, K]
        if self.head_average:  # the same number of query heads per KV head: the mean over all heads
            return last.mean(dim=1, keepdim=True).expand_as(last)
        return last
