"""The memory-policy interface: two verbs, ``reset`` and ``select``.

A policy sees one layer at a time through a :class:`PolicyView` (attention, keys, values, positions,
validity and its own per-token state) and answers with a boolean keep mask. It never sees a model class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ..registry import Registry
from .spec import BUDGET_RULES, BudgetRule

POLICIES: Registry[type[MemoryPolicy]] = Registry("memory policy")
MODULES = ("full", "h2o", "keynorm", "namm", "random", "snapkv", "streaming", "tova")


def _register_builtin() -> None:
    import importlib

    for module in MODULES:  # each registers its policy class when imported
        importlib.import_module(f"{__package__}.{module}")


POLICIES.add_loader(_register_builtin)


def register_policy(name: str):
    """Class decorator registering a :class:`MemoryPolicy` subclass under ``name`` (its ``name`` attribute)."""
    return POLICIES.register_class(name)


@dataclass
class PolicyView:
    """What a policy may look at for one layer at one memory update.

    Shapes use B = batch, H = KV heads, K = cache slots (ragged heads are padded; see ``valid``),
    Q = attention rows recorded since the previous update, D = head dim.

    Attributes:
        layer: layer index.
        attn: float32 ``[B, H, Q, K]`` softmax probabilities of the queries since the last update, averaged
            over the query heads of each KV head (GQA). Rows recorded when the cache was shorter are
            zero-extended on the right. ``None`` when the policy declares ``needs_attention = False``.
        keys, values: ``[B, H, K, D]`` cached keys (after RoPE) and values.
        positions: int64 ``[B, H, K]`` absolute token positions (-1 for padding).
        valid: bool ``[B, H, K]``; False marks padding slots of ragged heads.
        num_new: tokens appended since the previous update; they occupy the last ``num_new`` slots.
        budget: tokens per head to keep, or ``None`` for threshold policies (the NAMM).
        state: per-token policy state, ``name -> [B, H, K, *]``. The cache gathers it with the same index
            as the keys and zero-fills it for new tokens, so it can never drift out of step. A policy
            updates it by assigning new tensors of the same shapes to the dict.
        protected: bool ``[B, H, K]`` tokens the schedule forbids evicting (newest tokens, sinks); budgeted
            policies must keep them. ``None`` means nothing is protected.
        shared_rows: every batch row holds the same cache, attention rows and state (a one-row prefix just
            copied to the rows of population members that differ only in their policy parameters), so work
            that does not depend on those parameters may be done on row 0 alone.
        prefix_memo: at the first update of a cell started from a shared prefix
            (:mod:`~namm_suite.shared_prefix`), a dict shared by every cell of that prefix, which all see
            the same cache, attention rows and (zero) state there: what a policy computes from those alone
            may be kept in it for the next cell. ``None`` elsewhere.
    """

    layer: int
    attn: torch.Tensor | None
    keys: torch.Tensor
    values: torch.Tensor
    positions: torch.Tensor
    valid: torch.Tensor
    num_new: int
    budget: int | None
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    protected: torch.Tensor | None = None
    shared_rows: bool = False
    prefix_memo: dict | None = None


class MemoryPolicy(ABC):
    """Decides, per layer and KV head, which cached tokens to keep.

    Class attributes:
        needs_attention: whether ``select`` reads ``view.attn`` (forces eager attention in the hook).
        attention_rows: how many of the most recent attention rows the policy needs (``None`` = all rows
            since the previous update). Fewer rows means less memory held between updates.
        token_state: names and trailing shapes of per-token state tensors the cache must carry.
        budget_rule: ``"required"`` (a cache size is needed), ``"cap"`` (the policy sizes its own cache and
            a cache size, when given, caps it) or ``"none"`` (no cache size applies); see
            :mod:`~namm_suite.policies.spec`. ``uses_budget`` (derived: the rule is ``required``) tells
            the manager that ``select`` keeps exactly ``view.budget`` tokens.
        holds_memory: False for a policy that never evicts (the full cache), which a protocol with no
            memory (the Decision Transformer's K-step window) still runs.
        update_multiple: ``update_every`` must be a multiple of it (the NAMM's STFT hop: 16).
    """

    name: str = "base"
    needs_attention: bool = False
    attention_rows: int | None = None
    token_state: ClassVar[dict[str, tuple[int, ...]]] = {}
    budget_rule: ClassVar[BudgetRule] = "required"
    uses_budget: ClassVar[bool] = True
    holds_memory: ClassVar[bool] = True
    update_multiple: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs) -> None:
        """Keep ``budget_rule`` and ``uses_budget`` in step, whichever of the two a subclass declares."""
        super().__init_subclass__(**kwargs)
        own = vars(cls)
        if "budget_rule" in own:
            if cls.budget_rule not in BUDGET_RULES:
                raise ValueError(f"{cls.__name__}.budget_rule must be one of {BUDGET_RULES}, got {cls.budget_rule!r}")
            cls.uses_budget = cls.budget_rule == "required"
        elif "uses_budget" in own:
            cls.budget_rule = "required" if cls.uses_budget else "none"

    @classmethod
    def check_update_every(cls, update_every: int) -> None:
        """Raise ``ValueError`` when the policy cannot run with ``update_every`` tokens between updates."""
        if update_every % cls.update_multiple:
            raise ValueError(f"policy {cls.name!r} needs an update_every (--update-every) that is a multiple of "
                             f"{cls.update_multiple}, got {update_every}")

    def reset(self, n_layers: int) -> None:
        """Forget all per-sequence state (called when a new sequence starts)."""

    @abstractmethod
    def select(self, view: PolicyView) -> torch.Tensor:
        """Return a bool keep mask ``[B, H, K]``; it must be False on padding slots."""


class ScoredPolicy(MemoryPolicy):
    """A budgeted policy defined by a score: keeps the ``budget`` highest-scoring tokens per head,
    protected tokens first."""

    @abstractmethod
    def score(self, view: PolicyView) -> torch.Tensor:
        """Float ``[B, H, K]`` scores; higher means more worth keeping."""

    def select(self, view: PolicyView) -> torch.Tensor:
        # a policy's own "always keep" marks (+inf) rank below the schedule's protected tokens
        scores = self.score(view).float().nan_to_num(posinf=torch.finfo(torch.float32).max)
        if view.protected is not None:
            scores = scores.masked_fill(view.protected, float("inf"))
        return keep_top_k(scores, view.valid, view.budget)


def recent_tokens(positions: torch.Tensor, valid: torch.Tensor, n: int) -> torch.Tensor:
    """Bool ``[B, H, K]``: the ``n`` most recent valid tokens of each head (by absolute position)."""
    newest = positions.masked_fill(~valid, -1).amax(-1, keepdim=True)
    return valid & (positions > newest - n)


def keep_top_k(scores: torch.Tensor, valid: torch.Tensor, k: int | None) -> torch.Tensor:
    """Bool ``[B, H, K]`` mask of the ``k`` best valid tokens per head (all valid tokens if ``k`` is None
    or not smaller than the number of valid tokens). Ties go to the older (lower) slot."""
    if k is None:
        return valid.clone()
    n_slots = scores.shape[-1]
    if k >= n_slots:
        return valid.clone()
    masked = scores.float().masked_fill(~valid, float("-inf"))
    # stable descending sort so that ties resolve deterministically towards older tokens
    order = torch.sort(masked, dim=-1, descending=True, stable=True).indices[..., :k]
    keep = torch.zeros_like(valid)
    keep.scatter_(-1, order, True)
    return keep & valid
