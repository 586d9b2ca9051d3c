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
    """Keep tokens the last `window` queries attend to most, pooled over `kernel` neighbours (SnapKV).

    The window's own tokens are always kept and cast no votes for themselves; the pooling runs over the
    votes of the older tokens only, zero-padded at the edges (the reference code and kvpress).

    Attributes:
        window: observation-window queries, >= 1. Default 32: the SnapKV paper's LongBench setting and its
            reference code; kvpress's ``SnapKVPress`` uses 64.
        kernel: odd pooling width, >= 1. Default 7: the paper's LongBench setting; the reference code and
            kvpress use 5.
        pooling: "max" (default: the paper's LongBench setting) or "avg" (the reference code's and kvpress's
            default).
    """

    window: int = 32
    kernel: int = 7
    pooling: str = "max"
    needs_attention = True

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"snapkv: window must be >= 1, got {self.window}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"snapkv: kernel must be a positive odd number, got {self.kernel}")
        if self.pooling not in ("max", "avg"):
            raise ValueError(f"snapkv: pooling must be 'max' or 'avg', got {self.pooling!r}")
        self.attention_rows = self.window

    def score(self, view: PolicyView) -> torch.Tensor:
        window = recent_tokens(view.positions, view.valid, self.window)
        votes = view.attn.sum(dim=2).masked_fill(window, 0.0)  # [B, H, K]
        batch, heads, n_keys = votes.shape
        pool = F.max_pool1d if self.pooling == "max" else F.avg_pool1d
        pooled = pool(votes.view(batch * heads, 1, n_keys), self.kernel, stride=1, padding=self.kernel // 2)
        return pooled.view(batch, heads, n_keys).masked_fill(window, float("inf"))
