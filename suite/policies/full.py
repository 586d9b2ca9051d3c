"""Full cache: the reference every other policy is compared with."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import MemoryPolicy, PolicyView, register_policy


@register_policy("full")
@dataclass
class FullPolicy(MemoryPolicy):
    """Keep every token (no eviction; the full-cache reference)."""

    uses_budget = False

    def select(self, view: PolicyView) -> torch.Tensor:
        return view.valid.clone()
