"""The BAM scorer (namm-spec §4): one backward-masked self-attention layer over a head's cached tokens.

Every (layer, KV head) is scored independently with the same θ; tokens attend to themselves and to every
newer valid token. No activation, normalisation, positional encoding or smoothing anywhere.
"""

from __future__ import annotations

import math

import torch

from .params import D_ATTN, D_FEATURE, BamParams

_MASKED = torch.finfo(torch.float32).min


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
        params: θ; must be on the features' device.

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
    q, k, v = z.split(D_ATTN, dim=-1)
    logits = (q @ k.transpose(-1, -2)) / math.sqrt(D_ATTN)
    # The reference adds float32 min to masked logits; filling with it instead gives the same softmax
    # for any row with an allowed entry and keeps an all-masked (padding) row uniform rather than NaN.
    logits = logits.masked_fill(~backward_mask(valid.bool()), _MASKED)
    out = torch.softmax(logits, dim=-1) @ v
    y = out @ params.W_b + params.b_b
    r, m = y.split(D_FEATURE, dim=-1)
    x_mod = x * (1.0 + m) + r
    return x_mod @ params.w_c + params.b_c
