"""SnapKV: an observation window of recent queries votes for the tokens to keep, with 1-D pooling so that
neighbouring tokens survive together (Li et al., "SnapKV: LLM Knows What You are Looking for Before
Generation", NeurIPS 2024)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import PolicyView, ScoredPolicy, recent_tokens, register_policy


@register_policy("snapkv")
@dataclass
class SnapKVPolicy(ScoredPolicy):
    """Keep tokens the last `window` queries attend to most, max-pooled over `kernel` neighbours (SnapKV).

    Attributes:
        window: observation-window queries (paper: 32), >= 1; the window's own tokens are always kept.
        kernel: odd pooling width (paper: 7), >= 1.
    """

    window: int = 32
    kernel: int = 7
    needs_attention = True

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"snapkv: window must be >= 1, got {self.window}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"snapkv: kernel must be a positive odd number, got {self.kernel}")
        self.attention_rows = self.window

    def score(self, view: PolicyView) -> torch.Tensor:
        votes = view.attn.sum(dim=2)  # [B, H, K]
        batch, heads, n_keys = votes.shape
        pooled = F.max_pool1d(votes.view(batch * heads, 1, n_keys), self.kernel, stride=1, padding=self.kernel // 2)
        scores = pooled.view(batch, heads, n_keys)
        return scores.masked_fill(recent_tokens(view.positions, view.valid, self.window), float("inf"))
