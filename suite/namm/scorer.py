"""The BAM scorer (docs/namm-spec.md §4): one backward-masked self-attention layer over a head's cached
tokens.

Every (layer, KV head) is scored independently with the same θ; tokens attend to themselves and to every
newer valid token. No activation, normalisation, positional encoding or smoothing anywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .params import D_ATTN, D_FEATURE, BamParams


def backward_mask(valid: torch.Tensor) -> torch.Tensor:
    """Bool ``[..., N, N]``: entry (i, j) is True when token i may attend to token j (j ≥ i, j valid)."""
    n = valid.shape[-1]
    idx = torch.arange(n, device=valid.device)
    return (idx[None, :] >= idx[:, None]) & valid[..., None, :]


def bam_scores(features: torch.Tensor, valid: torch.Tensor, params: BamParams) -> torch.Tensor:
    """Score every cached token: float32 ``[..., N]``; higher means more worth keeping.

    Args:
        features: float ``[..., N, 25]`` token features φ, oldest token first.
        valid: bool ``[..., N]``; padding tokens are never attended to. Their own scores are finite but
            meaningless (the selection rule gives them −∞).
        params: θ; must be on the features' device. With ``BamParams(rows=B)`` row b of the batch is
            scored with its own θ_b.

    With X = φ: Z = X·W_a + b_a split into Q, K, V (32 each); ℓ_ij = Q_i·K_j/√32 on the backward mask;
    O = softmax(ℓ)·V; Y = O·W_b + b_b split into R, M (25 each); X′ = X ⊙ (1 + M) + R;
    score = X′·w_c + b_c. θ = 0 gives exactly 0 for every token.
    """
    if features.shape[-1] != D_FEATURE or tuple(features.shape[:-1]) != tuple(valid.shape):
        raise ValueError(
            f"expected features [..., N, {D_FEATURE}] and valid [..., N], "
            f"got {tuple(features.shape)} and {tuple(valid.shape)}"
        )
    x = features.float()
    z = x @ params.W_a + params.b_a
    # Newest-first order turns the backward mask (j ≥ i) into a causal one, so the fused SDPA kernel
    # skips the masked half; padding adds an explicit mask (each row may always attend to itself, which
    # keeps all-masked padding rows finite without touching valid rows).
    q, k, v = z.flip(-2).split(D_ATTN, dim=-1)
    valid = valid.bool()
    if bool(valid.all()):
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        itself = torch.eye(valid.shape[-1], dtype=torch.bool, device=valid.device)
        allowed = (backward_mask(valid) | itself).flip(-1, -2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    y = out.flip(-2) @ params.W_b + params.b_b
    r, m = y.split(D_FEATURE, dim=-1)
    x_mod = x * (1.0 + m) + r
    if params.w_c.ndim == 1:
        return x_mod @ params.w_c + params.b_c
    return (x_mod @ params.w_c.mT).squeeze(-1) + params.b_c  # one θ per batch row (BamParams(rows=B))


def pool_scores(scores: torch.Tensor, valid: torch.Tensor, width: int) -> torch.Tensor:
    """Each valid token's score raised to the best score within ``width // 2`` cache slots either side.

    A documented deviation (docs/namm-spec.md, Deviations): SnapKV's max-pooling of its votes, which keeps
    the neighbours of a token worth keeping (every digit of a number, every word of a name) together.
    ``scores`` float ``[..., N]``, ``valid`` bool ``[..., N]``; padding neither gives nor takes a score.
    ``width`` 1 returns ``scores`` unchanged.
    """
    if width == 1:
        return scores
    lead, n = scores.shape[:-1], scores.shape[-1]
    masked = scores.masked_fill(~valid.bool(), float("-inf")).reshape(-1, 1, n)
    pooled = F.max_pool1d(masked, width, stride=1, padding=width // 2).reshape(*lead, n)
    return torch.where(valid.bool(), pooled, scores)
