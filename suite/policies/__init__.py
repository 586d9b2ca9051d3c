"""Memory policies, one file each, registered by name in :data:`POLICIES`."""

from . import full, h2o, keynorm, namm, random, snapkv, streaming, tova  # noqa: F401  (registration)
from .base import POLICIES, MemoryPolicy, PolicyView, ScoredPolicy, keep_top_k, register_policy

__all__ = [
    "POLICIES",
    "MemoryPolicy",
    "PolicyView",
    "ScoredPolicy",
    "create_policy",
    "keep_top_k",
    "register_policy",
]


def create_policy(name: str, **options) -> MemoryPolicy:
    """Instantiate the policy registered as ``name`` with its dataclass fields as keyword options."""
    return POLICIES.get(name)(**options)
