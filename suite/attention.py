"""The attention hook through which every memory policy sees a model.

Registered with ``transformers.AttentionInterface`` under :data:`ATTN_IMPLEMENTATION`; load a model with
``attn_implementation="namm"``. Any HF model that routes attention through ``ALL_ATTENTION_FUNCTIONS``
(Llama, Qwen2, Mistral, Gemma, GPT-2, ...) then works without model-specific code.

With a :class:`~namm_suite.cache.RaggedKVCache`, the hook builds the per-head mask from the cache's
validity and absolute positions (the compacted cache order is not the position order the model's own
causal mask assumes) and tells each cache layer its sliding window. The output always comes from SDPA.
When the cache's manager needs attention, the softmax probabilities are computed as well, only for the
query rows the policy will read (``MemoryPolicy.attention_rows``): scores in the model's dtype, softmax
accumulated in float32. A :class:`~namm_suite.row_batch.RowsCache` (one cache per batch row) is attended
row by row through the same path. Without a ragged cache it is plain causal attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

from .cache import current_layer

ATTN_IMPLEMENTATION = "namm"


def _model_mask(attention_mask: torch.Tensor | None, q_len: int, k_len: int, device: torch.device) -> torch.Tensor:
    """Bool visibility ``[B|1, 1|Hq, q, K]`` from the model's mask (causal when it gives none)."""
    if attention_mask is None:
        rows = torch.arange(q_len, device=device)[:, None] + (k_len - q_len)
        return (torch.arange(k_len, device=device)[None, :] <= rows)[None, None]
    if attention_mask.dtype == torch.bool:
        return attention_mask
    return attention_mask > torch.finfo(attention_mask.dtype).min / 2


def _per_kv_head(mask: torch.Tensor, kv_heads: int) -> torch.Tensor:
    """``[B, 1|Hq, q, K]`` -> ``[B, 1|H, 1|G, q, K]`` (query head ``h*G + g`` belongs to KV head ``h``)."""
    if mask.shape[1] == 1:
        return mask[:, :, None]
    return mask.view(mask.shape[0], kv_heads, -1, *mask.shape[-2:])


def _sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor, scaling: float,
          dropout: float) -> torch.Tensor:
    """SDPA output ``[B, Hq, q, D]``; ``mask`` bool ``[B, 1|H, 1|G, q, K]``.

    A mask shared by all heads goes to SDPA as is (grouped-query attention in the kernel). Per-KV-head masks
    fold each KV head's G query heads into its query rows, so neither keys nor values are repeated."""
    batch, q_heads, q_len, _ = query.shape
    kv_heads, groups = key.shape[1], q_heads // key.shape[1]
    if mask.shape[1] == 1 and mask.shape[2] == 1:
        return F.scaled_dot_product_attention(query, key, value, attn_mask=None if bool(mask.all()) else mask[:, 0],
                                              dropout_p=dropout, scale=scaling, enable_gqa=groups > 1)
    folded = query.reshape(batch, kv_heads, groups * q_len, -1)
    rows = mask.expand(batch, kv_heads, groups, q_len, -1).reshape(batch, kv_heads, groups * q_len, -1)
    out = F.scaled_dot_product_attention(folded, key, value, attn_mask=rows, dropout_p=dropout, scale=scaling)
    return out.view(batch, q_heads, q_len, -1)


def _probabilities(query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor, scaling: float,
                   softcap: float | None) -> torch.Tensor:
    """Float32 softmax probabilities ``[B, H, G, q, K]`` of ``query [B, Hq, q, D]`` over ``key [B, H, K, D]``
    (scores in the model's dtype, softmax accumulated in float32); ``mask`` ``[B, 1|H, 1|G, q, K]``."""
    batch, q_heads, q_len, head_dim = query.shape
    grouped = query.view(batch, key.shape[1], q_heads // key.shape[1], q_len, head_dim)
    scores = torch.matmul(grouped, key[:, :, None].transpose(-1, -2)).mul_(scaling)  # [B, H, G, q, K]
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    return torch.softmax(scores.masked_fill_(~mask, float("-inf")), dim=-1, dtype=torch.float32)


def namm_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention with per-head masks and optional attention capture.

    Args:
        query: ``[B, Hq, q, D]``; key, value: ``[B, H, K, D]`` with ``Hq = G*H`` (grouped-query attention).
        attention_mask: the model's mask; ignored when a ragged cache supplies its own, used otherwise.
    Returns:
        ``([B, q, Hq, D] output, probabilities [B, Hq, q, K] or None)`` like transformers' attention
        functions; probabilities only when the model needs them (soft-capped logits).
    """
    if kwargs.get("s_aux") is not None:
        raise NotImplementedError("attention sinks (s_aux) are not supported by the namm attention hook")
    batch, q_heads, q_len, head_dim = query.shape
    scaling = head_dim**-0.5 if scaling is None else scaling
    softcap = kwargs.get("softcap")
    dropout = dropout if module.training else 0.0
    layer = current_layer()
    first = None
    if layer is not None and layer.keys is key and hasattr(layer, "attend_rows"):  # a cache per batch row
        return layer.attend_rows(namm_attention, module, query, scaling=scaling, dropout=dropout, **kwargs)
    if layer is not None and layer.keys is key:
        layer.sliding_window = kwargs.get("sliding_window")
        mask = layer.attention_mask()[:, :, None]  # [B, H|1, 1, q, K]
        manager = getattr(layer, "manager", None)
        first = manager.first_row_to_record(layer) if manager is not None else None
    else:
        mask = _per_kv_head(_model_mask(attention_mask, q_len, key.shape[-2], query.device), key.shape[1])

    if softcap is None:
        output, weights = _sdpa(query, key, value, mask, scaling, dropout), None
        if first is not None:
            manager.record_attention(layer, _probabilities(query[:, :, first:], key, mask[..., first:, :],
                                                           scaling, None))
    else:  # SDPA cannot soft-cap: eager attention over every row
        probs = _probabilities(query, key, mask, scaling, softcap)
        if first is not None:
            manager.record_attention(layer, probs[..., first:, :])
        weights = F.dropout(probs.to(query.dtype), p=dropout, training=module.training)
        output = torch.matmul(weights, value[:, :, None]).view(batch, q_heads, q_len, -1)
        weights = weights.view(batch, q_heads, q_len, -1)
    return output.transpose(1, 2).contiguous(), weights


AttentionInterface.register(ATTN_IMPLEMENTATION, namm_attention)
