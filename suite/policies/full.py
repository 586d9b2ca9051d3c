"""Full cache: the reference every other policy is compared with."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import MemoryPolicy, PolicyView, register_policy
from .spec import REFERENCE


@register_policy(REFERENCE)
@dataclass
class FullPolicy(MemoryPolicy):
    """Keep every token (no eviction; the full-cache reference)."""

    budget_rule = "none"
    holds_memory = False

    def select(self, view: PolicyView) -> torch.Tensor:
        return view.valid.clone()
