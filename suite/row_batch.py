"""Several sequences, each with its own memory, through one batched forward pass.

Each batch row is a sequence of its own: its own :class:`~namm_suite.manager.MemoryManager` (policy,
schedule, budget, statistics) and :class:`~namm_suite.cache.RaggedKVCache`. A pass (:func:`forward_rows`)
gives each row its next piece of input, of any length: the pieces are left-padded to the longest, the
dense layers (embeddings, projections, MLPs, the LM head) run on the whole batch, and every row's new keys
and values go to its own cache while the padding goes nowhere. Attention runs row by row through the hook's
ordinary path on the row's own cache (:class:`RowsCache`), so each row's memory updates, recorded attention
rows and statistics are those it would have alone, whatever the other rows' lengths, protocols or budgets;
only the batched matrix products may round differently in the last bits.

This differs from one batched :class:`~namm_suite.cache.RaggedKVCache` (:mod:`namm_suite.batching`, the
evolution's population members): that cache has one memory schedule for every row, so rows whose lengths
differ modulo ``update_every`` would be evicted at other tokens than alone (and one-shot evictions would
see padding rows among the last queries).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache

from .cache import set_current_layer
from .manager import MemoryManager


class RowsCache(Cache):
    """A ``transformers.Cache`` for one pass of :func:`forward_rows`: batch row ``i`` reads its last
    ``lengths[i]`` tokens of the pass into ``caches[i]`` (the tokens before them are padding)."""

    def __init__(self, caches: list[Any], lengths: list[int]) -> None:
        super().__init__(layers=[])
        self.caches, self.lengths = caches, lengths

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Append each row's real tokens of ``[B, H, q, D]`` keys/values to its own cache; the hook then
        attends row by row (:meth:`_RowsLayer.attend_rows`)."""
        q = key_states.shape[-2]
        inner = dict(kwargs.get("kwargs") or {})
        positions = inner.pop("position_ids", None)
        for i, (cache, n) in enumerate(zip(self.caches, self.lengths, strict=True)):
            own = {} if positions is None else {"position_ids": positions[i:i + 1, q - n:]}
            cache.update(key_states[i:i + 1, :, q - n:], value_states[i:i + 1, :, q - n:], layer_idx,
                         kwargs={**inner, **own})
        set_current_layer(_RowsLayer(self, layer_idx, key_states))
        return key_states, value_states


class _RowsLayer:
    """What the attention hook sees of a :class:`RowsCache` layer: ``keys`` (the pass's new keys, by
    which the hook recognises the call) and :meth:`attend_rows`."""

    def __init__(self, cache: RowsCache, layer_idx: int, keys: torch.Tensor) -> None:
        self.cache, self.layer_idx, self.keys = cache, layer_idx, keys

    def attend_rows(self, attention, module: torch.nn.Module, query: torch.Tensor,
                    **kwargs: Any) -> tuple[torch.Tensor, None]:
        """``attention`` (the hook) on each row's real queries of ``query [B, Hq, q, D]`` over the row's own
        cache layer; returns ``[B, q, Hq, D]`` (zeros on padding) and no weights."""
        batch, heads, q, dim = query.shape
        out = query.new_zeros((batch, q, heads, dim))
        for i, (cache, n) in enumerate(zip(self.cache.caches, self.cache.lengths, strict=True)):
            layer = cache.layers[self.layer_idx]
            set_current_layer(layer)
            out[i, q - n:] = attention(module, query[i:i + 1, :, q - n:], layer.keys, layer.values, None,
                                       **kwargs)[0][0]
        return out, None


@torch.no_grad()
def forward_rows(model: torch.nn.Module, managers: list[MemoryManager], pieces: list[torch.Tensor],
                 pad_id: int = 0) -> torch.Tensor:
    """One batched pass: ``managers[i]`` (its sequence started with ``new_cache``) reads token ids
    ``pieces[i]`` (1-D, non-empty) at its own next positions. Returns float ``[len(pieces), V]``: each row's
    logits after its last token."""
    if not pieces or any(piece.ndim != 1 or not len(piece) for piece in pieces):
        raise ValueError("forward_rows needs a non-empty 1-D piece of token ids per row")
    if len(managers) != len(pieces) or any(manager.cache is None for manager in managers):
        raise ValueError("forward_rows needs one manager with a started sequence (new_cache) per piece")
    device = model.device
    q = max(len(piece) for piece in pieces)
    ids = torch.full((len(pieces), q), pad_id, dtype=torch.long, device=device)
    positions = torch.zeros((len(pieces), q), dtype=torch.long, device=device)
    for i, (manager, piece) in enumerate(zip(managers, pieces, strict=True)):
        seen = manager.cache.seen_tokens
        ids[i, q - len(piece):] = piece
        positions[i, q - len(piece):] = torch.arange(seen, seen + len(piece), device=device)
    cache = RowsCache([manager.cache for manager in managers], [len(piece) for piece in pieces])
    return model(input_ids=ids, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
