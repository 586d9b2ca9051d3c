"""Which tokens survive a NAMM update (docs/namm-spec.md §5), given BAM scores.

Two rules share the same preparation: padding gets −∞, the newest valid token of each head gets +∞
(always kept), and a token counts as "wanted" when its score is ≥ 0 (an exact 0 is kept).

- :func:`select_kappa` (the reference, default): κ = the largest number of wanted tokens over the heads of
  a batch row; every head keeps its κ best tokens, so each row's cache stays rectangular and heads with
  fewer wanted tokens also keep their best negative ones. One row's κ never depends on another row (the
  reference runs batch 1; batched population members must not share a κ).
- :func:`select_threshold` (a documented deviation): every head keeps exactly its wanted tokens (ragged,
  frees more memory).

Both accept an optional cap on tokens per head. Kept tokens stay in their original order (a mask).
"""

from __future__ import annotations

import torch

_FLOAT_MIN = torch.finfo(torch.float32).min


def _check(scores: torch.Tensor, valid: torch.Tensor, cap: int | None) -> None:
    if scores.shape != valid.shape or scores.ndim < 1:
        raise ValueError(
            f"scores and valid must share shape [B, H, N], got {tuple(scores.shape)} and {tuple(valid.shape)}"
        )
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise ValueError(f"cap must be None or an int >= 1, got {cap!r}")


def prepare_scores(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Float32 ``[..., N]`` scores with padding −∞ and each head's newest valid slot +∞.

    The newest token is the last valid slot (caches are ordered oldest → newest). NaN or −∞ scores of
    valid tokens become the float32 minimum so that valid tokens always rank above padding.
    """
    valid = valid.bool()
    s = torch.nan_to_num(scores.float(), nan=_FLOAT_MIN, posinf=float("inf"), neginf=_FLOAT_MIN)
    s = s.masked_fill(~valid, float("-inf"))
    slot = torch.arange(s.shape[-1], device=s.device)
    last = torch.where(valid, slot, -1).amax(dim=-1, keepdim=True)
    return s.masked_fill((slot == last) & valid, float("inf"))


def _keep_top(s: torch.Tensor, valid: torch.Tensor, k: torch.Tensor | int) -> torch.Tensor:
    """Bool mask of the k best slots per head (ties go to the older slot), restricted to valid slots."""
    order = torch.sort(s, dim=-1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(s.shape[-1], device=s.device).expand_as(order).contiguous())
    return (rank < k) & valid.bool()


def wanted_counts(s: torch.Tensor) -> torch.Tensor:
    """c_h = #{j : s[h, j] ≥ 0} of prepared scores, int64 ``[..., 1]``."""
    return (s >= 0).sum(dim=-1, keepdim=True)


def select_kappa(scores: torch.Tensor, valid: torch.Tensor, cap: int | None = None) -> torch.Tensor:
    """Reference rule: keep the κ best tokens in every head, κ = max over the heads (dim −2) of c_h, one κ
    per batch row.

    Args:
        scores: float ``[B, H, N]`` BAM scores.
        valid: bool ``[B, H, N]``.
        cap: optional maximum tokens per head (κ ← min(κ, cap)); None reproduces the reference.

    Returns:
        bool ``[B, H, N]`` keep mask, False on padding. Heads with fewer than κ valid tokens keep them all.
    """
    _check(scores, valid, cap)
    if scores.numel() == 0:
        return valid.bool().clone()
    s = prepare_scores(scores, valid)
    counts = wanted_counts(s)
    kappa = counts.amax(dim=-2, keepdim=True) if s.ndim > 1 else counts  # [B, 1, 1]: one κ per row
    if cap is not None:
        kappa = kappa.clamp_max(cap)
    return _keep_top(s, valid, kappa)


def select_threshold(scores: torch.Tensor, valid: torch.Tensor, cap: int | None = None) -> torch.Tensor:
    """Strict per-head rule: keep tokens with score ≥ 0 and the newest; ragged across heads.

    With a cap, each head keeps its min(c_h, cap) best tokens. Shapes as :func:`select_kappa`.
    """
    _check(scores, valid, cap)
    if scores.numel() == 0:
        return valid.bool().clone()
    s = prepare_scores(scores, valid)
    counts = wanted_counts(s)
    if cap is not None:
        counts = counts.clamp_max(cap)
    return _keep_top(s, valid, counts)


SELECTIONS = {"kappa": select_kappa, "threshold": select_threshold}
