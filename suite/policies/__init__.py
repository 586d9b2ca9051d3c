"""Memory policies, one file each, registered by name in :data:`POLICIES`.

Importing the package loads no torch: :class:`PolicySpec` is plain data, and the registry and the policy
classes (``base``) load on first use; the built-in policies register on the first lookup.
"""

from __future__ import annotations

import importlib
from typing import Any

from .spec import (
    BUDGET_RULES,
    LEARNED,
    NAMM,
    REFERENCE,
    BudgetRule,
    PolicySpec,
    default_label,
    is_learned,
    is_reference,
)

_FROM_BASE = ("POLICIES", "MemoryPolicy", "PolicyView", "ScoredPolicy", "keep_top_k", "register_policy")

__all__ = [
    "BUDGET_RULES",
    "LEARNED",
    "NAMM",
    "POLICIES",
    "REFERENCE",
    "MemoryPolicy",
    "PolicySpec",
    "PolicyView",
    "ScoredPolicy",
    "create_policy",
    "default_label",
    "is_learned",
    "is_reference",
    "keep_top_k",
    "policy_names",
    "register_policy",
]


def __getattr__(name: str) -> Any:
    if name in _FROM_BASE:
        return getattr(importlib.import_module(f"{__name__}.base"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def create_policy(name: str, **options) -> Any:
    """Instantiate the policy registered as ``name`` with its dataclass fields as keyword options."""
    return PolicySpec(name).policy_class()(**options)


def policy_names(budget_rule: BudgetRule | None = None) -> list[str]:
    """The registered policy names, sorted; with ``budget_rule``, those whose class declares it
    (``"required"``: the budgeted baselines)."""
    from .base import POLICIES

    return [name for name in POLICIES.names() if budget_rule in (None, POLICIES.get(name).budget_rule)]
