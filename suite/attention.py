"""The attention hook through which every memory policy sees a model.

Registered with ``transformers.AttentionInterface`` under :data:`ATTN_IMPLEMENTATION`; load a model with
``attn_implementation="namm"``. Any HF model that routes attention through ``ALL_ATTENTION_FUNCTIONS``
(Llama, Qwen2, Mistral, Gemma, GPT-2, ...) then works without model-specific code.

With a :class:`~namm_suite.cache.RaggedKVCache`, the hook builds the per-head mask from the cache's
validity and absolute positions (the compacted cache order is not the position order the model's own
causal mask assumes). When the cache's manager needs attention it computes eager fp32 softmax attention and
hands the probabilities over; otherwise it calls SDPA. Without a ragged cache it is plain causal attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

from .cache import current_layer

ATTN_IMPLEMENTATION = "namm"


def _plain_causal_mask(q_len: int, k_len: int, device: torch.device) -> torch.Tensor:
    """Bool ``[1, 1, q, K]`` causal mask when the last ``q`` keys are the queries."""
    offset = k_len - q_len
    rows = torch.arange(q_len, device=device)[:, None] + offset
    return (torch.arange(k_len, device=device)[None, :] <= rows)[None, None]


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
        ``([B, q, Hq, D] output, probabilities or None)`` like transformers' eager attention.
    """
    if kwargs.get("s_aux") is not None:
        raise NotImplementedError("attention sinks (s_aux) are not supported by the namm attention hook")
    batch, q_heads, q_len, head_dim = query.shape
    groups = q_heads // key.shape[1]
    scaling = head_dim**-0.5 if scaling is None else scaling
    softcap = kwargs.get("softcap")
    layer = current_layer()
    manager = None
    if layer is not None and layer.keys is key:
        mask = layer.attention_mask(kwargs.get("sliding_window"))[:, :, None]  # [B, H, 1, q, K]
        manager = getattr(layer, "manager", None)
    else:
        if attention_mask is None:
            mask = _plain_causal_mask(q_len, key.shape[-2], query.device)
        elif attention_mask.dtype == torch.bool:
            mask = attention_mask
        else:
            mask = attention_mask > torch.finfo(attention_mask.dtype).min / 2
        mask = mask.expand(batch, q_heads, q_len, key.shape[-2]).reshape(batch, -1, groups, q_len, key.shape[-2])

    need_probs = manager is not None and manager.needs_attention
    if need_probs or softcap is not None or dropout > 0.0:
        # group the query heads of each KV head instead of copying keys/values per query head
        grouped = query.view(batch, key.shape[1], groups, q_len, head_dim)
        scores = torch.matmul(grouped, key[:, :, None].transpose(-1, -2)) * scaling  # [B, H, G, q, K]
        if softcap is not None:
            scores = torch.tanh(scores / softcap) * softcap
        scores = scores.masked_fill(~mask, float("-inf"))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32)
        if need_probs:
            manager.record_attention(layer, probs)
        probs = probs.to(query.dtype)
        if dropout > 0.0:
            probs = F.dropout(probs, p=dropout, training=module.training)
        output = torch.matmul(probs, value[:, :, None]).view(batch, q_heads, q_len, -1)
        weights = probs.view(batch, q_heads, q_len, -1)
    else:
        sdpa_mask = mask.expand(-1, -1, groups, -1, -1).reshape(batch, q_heads, q_len, -1)
        output = F.scaled_dot_product_attention(
            query, key, value, attn_mask=sdpa_mask, scale=scaling, enable_gqa=groups > 1
        )
        weights = None
    return output.transpose(1, 2).contiguous(), weights


AttentionInterface.register(ATTN_IMPLEMENTATION, namm_attention)
