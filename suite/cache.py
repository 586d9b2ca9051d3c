"""RaggedKVCache: a ``transformers.Cache`` whose heads can hold different tokens.

Each layer stores ``[B, H, L, D]`` keys/values with a validity mask and the absolute position of every
slot. After an eviction each head's kept tokens are compacted to the front (order preserved) and ``L``
shrinks to the longest head, so memory is really returned. Tokens *seen* (which drive position ids) are
tracked separately from tokens *held*. Keys are cached after RoPE, so nothing is ever re-rotated.

Sliding-window layers (transformers' ``"sliding_attention"`` layer type; the attention hook tells each layer
its window) hold at most their window: before new tokens are appended, the slots no later query can see
are dropped, as transformers' own sliding cache does.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

if TYPE_CHECKING:
    from .manager import MemoryManager

_CURRENT = threading.local()


def current_layer() -> RaggedLayer | None:
    """The cache layer updated most recently on this thread (read by the attention hook)."""
    return getattr(_CURRENT, "layer", None)


def set_current_layer(layer: Any) -> None:
    """Make ``layer`` the one the attention hook reads next (for a cache whose update is not a
    :class:`RaggedLayer`'s, e.g. :class:`~namm_suite.row_batch.RowsCache`)."""
    _CURRENT.layer = layer


class RaggedLayer(CacheLayerMixin):
    """One layer of a :class:`RaggedKVCache`.

    Attributes:
        keys, values: ``[B, H, L, D]``.
        valid: bool ``[B, H, L]``; False marks padding slots of heads holding fewer than ``L`` tokens.
        positions: int64 ``[B, H, L]`` absolute positions (-1 on padding).
        state: per-token policy state ``name -> [B, H, L, *]``, zero-filled for new tokens and gathered with
            the same index as the keys on eviction.
        seen: tokens ever appended to this layer (prompt + generated).
        num_new: tokens appended since the last eviction; they are the last ``num_new`` slots.
        query_positions: int64 ``[B, q]`` positions of the tokens appended by the latest ``update``.
        sliding_window: the window of a sliding-attention layer (a query at ``p`` sees keys at positions
            ``> p - window``), ``None`` for full attention; set by the attention hook on the first pass.
        uniform: every head holds the same slots (one mask serves all heads).
        padded_queries: the latest ``update`` appended padding (``valid=False``) tokens; each of them may
            attend to its own slot so that its hidden state stays finite (nothing valid attends to it).
        dropped: slots dropped from the front (out of the window) since the last compaction; recorded
            attention rows are aligned on it.
    """

    is_sliding = False
    is_croppable = False

    def __init__(
        self,
        layer_idx: int,
        token_state: dict[str, tuple[int, ...]] | None = None,
        manager: MemoryManager | None = None,
    ) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.manager = manager
        self.token_state_shapes = dict(token_state or {})
        self.valid: torch.Tensor | None = None
        self.positions: torch.Tensor | None = None
        self.state: dict[str, torch.Tensor] = {}
        self.seen = 0
        self.num_new = 0
        self.query_positions: torch.Tensor | None = None
        self.sliding_window: int | None = None
        self.uniform = True
        self.padded_queries = False
        self.dropped = 0

    @property
    def layer_type(self) -> str:
        """transformers' name of the layer's attention: ``"sliding_attention"`` or ``"full_attention"``."""
        return "full_attention" if self.sliding_window is None else "sliding_attention"

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        batch, heads, _, _ = key_states.shape
        self.device = key_states.device
        self.keys = key_states.new_empty((batch, heads, 0, key_states.shape[-1]))
        self.values = value_states.new_empty((batch, heads, 0, value_states.shape[-1]))
        self.valid = torch.zeros((batch, heads, 0), dtype=torch.bool, device=self.device)
        self.positions = torch.zeros((batch, heads, 0), dtype=torch.long, device=self.device)
        self.state = {
            name: torch.zeros((batch, heads, 0, *shape), dtype=torch.float32, device=self.device)
            for name, shape in self.token_state_shapes.items()
        }
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
        valid: torch.Tensor | None = None, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``q`` new tokens (``[B, H, q, D]``) and return the whole cache for attention.

        ``valid``: bool ``[B, q]``, False for padding tokens of a ragged batch (their slots are invalid from
        the start); ``None``: every token is real. Positions come from the model's ``position_ids``."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        batch, heads, q, _ = key_states.shape
        position_ids = (kwargs.get("kwargs") or {}).get("position_ids")
        if position_ids is None or position_ids.shape[-1] != q:
            position_ids = torch.arange(self.seen, self.seen + q, device=self.device).expand(batch, q)
        self.query_positions = position_ids.to(device=self.device, dtype=torch.long).expand(batch, q)
        if self.sliding_window is not None:
            self.drop_outside_window(int(self.query_positions.min()))
        self.keys = torch.cat([self.keys, key_states], dim=-2)
        self.values = torch.cat([self.values, value_states], dim=-2)
        self.padded_queries = valid is not None and not bool(valid.all())
        new_valid = (self.valid.new_ones((batch, heads, q)) if valid is None
                     else valid.to(self.device, torch.bool)[:, None, :].expand(batch, heads, q))
        self.valid = torch.cat([self.valid, new_valid], dim=-1)
        new_pos = self.query_positions[:, None, :].expand(batch, heads, q)
        self.positions = torch.cat([self.positions, new_pos], dim=-1)
        for name, tensor in self.state.items():
            pad = tensor.new_zeros((batch, heads, q, *tensor.shape[3:]))
            self.state[name] = torch.cat([tensor, pad], dim=2)
        self.seen += q
        self.num_new += q
        _CURRENT.layer = self
        return self.keys, self.values

    def attention_mask(self) -> torch.Tensor:
        """Bool ``[B, H, q, L]`` visibility of the cached slots for the latest queries: valid and causal by
        absolute position, within the sliding window if any. ``[B, 1, q, L]`` when the heads are uniform."""
        heads = slice(0, 1) if self.uniform else slice(None)
        q_pos = self.query_positions[:, None, :, None]
        k_pos = self.positions[:, heads, None, :]
        mask = self.valid[:, heads, None, :] & (k_pos <= q_pos)
        if self.sliding_window is not None:
            mask &= q_pos - k_pos < self.sliding_window
        if self.padded_queries:  # a padding query sees its own slot (the newest q slots, in order)
            q = q_pos.shape[-2]
            mask[..., -q:] |= torch.eye(q, dtype=torch.bool, device=self.device)
        return mask

    def outside_window(self, next_position: int) -> torch.Tensor:
        """Bool ``[B, H, L]``: valid slots no query at ``next_position`` or later can see (all False for a
        full-attention layer)."""
        if self.sliding_window is None:
            return torch.zeros_like(self.valid)
        return self.valid & (self.positions <= next_position - self.sliding_window)

    def drop_outside_window(self, next_position: int) -> None:
        """Drop the oldest slots that have left the window of every query from ``next_position`` on.

        They are a prefix of every head unless heads are ragged with different numbers of such slots; then
        only the common prefix is dropped here and the rest at the next memory update's compaction."""
        if not self.is_initialized or not self.keys.shape[-2]:
            return
        outside = self.outside_window(next_position)
        drop = int(outside.sum(-1).min())
        if drop == 0 or not bool(outside[..., :drop].all()):
            return
        self.keys, self.values = self.keys[:, :, drop:], self.values[:, :, drop:]
        self.valid, self.positions = self.valid[..., drop:], self.positions[..., drop:]
        self.state = {name: t[:, :, drop:] for name, t in self.state.items()}
        self.num_new = min(self.num_new, self.keys.shape[-2])
        self.dropped += drop

    def compact(self, keep: torch.Tensor) -> None:
        """Keep the slots where ``keep`` ``[B, H, L]`` is True, moved to the front of each head in their
        original order; ``L`` shrinks to the longest head so the freed memory is released."""
        keep = keep & self.valid
        self.dropped = 0
        if torch.equal(keep, self.valid) and bool(self.valid.all()):
            self.num_new = 0  # nothing evicted and no padding: no copy needed
            return
        counts = keep.sum(-1)
        new_len = int(counts.max()) if counts.numel() else 0
        # stable sort puts kept slots first, in their original order
        index = torch.sort((~keep).to(torch.int8), dim=-1, stable=True).indices[..., :new_len]
        self.keys = _gather(self.keys, index)
        self.values = _gather(self.values, index)
        self.positions = self.positions.gather(-1, index)
        self.valid = torch.arange(new_len, device=self.device) < counts[..., None]
        self.positions = self.positions.masked_fill(~self.valid, -1)
        self.state = {name: _gather(t, index) for name, t in self.state.items()}
        self.uniform = bool((self.positions == self.positions[:, :1]).all())
        self.num_new = 0

    def repeat_rows(self, rows: int) -> None:
        """Copy a one-row layer into ``rows`` identical batch rows (a prefix shared by population members,
        computed once; see :class:`~namm_suite.manager.MemoryManager` ``rows``)."""
        if not self.is_initialized:
            return

        def repeat(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.expand(rows, *tensor.shape[1:]).contiguous()

        self.keys, self.values = repeat(self.keys), repeat(self.values)
        self.valid, self.positions = repeat(self.valid), repeat(self.positions)
        self.query_positions = repeat(self.query_positions)
        self.state = {name: repeat(t) for name, t in self.state.items()}

    def held(self) -> torch.Tensor:
        """int64 ``[B, H]`` tokens held per head."""
        return self.valid.sum(-1)

    def nbytes(self) -> int:
        """Bytes of the key and value tensors (what the model's memory actually holds)."""
        if not self.is_initialized:
            return 0
        return self.keys.nbytes + self.values.nbytes

    def bytes_per_token(self) -> int:
        """Bytes one token costs in one head (its key plus its value)."""
        return self.keys.shape[-1] * self.keys.element_size() + self.values.shape[-1] * self.values.element_size()

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        held = 0 if not self.is_initialized else self.keys.shape[-2]
        return held + query_length, 0

    def get_seq_length(self) -> int:
        """Tokens seen, not held: this drives the position ids of new tokens."""
        return self.seen

    def get_max_length(self) -> int:
        return -1

    def reset(self) -> None:
        window = self.sliding_window
        self.__init__(self.layer_idx, self.token_state_shapes, self.manager)
        self.sliding_window = window

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        raise NotImplementedError("RaggedKVCache supports greedy decoding and sampling, not beam search")


def _gather(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Gather ``[B, H, L, *]`` along L with ``index`` ``[B, H, L']``."""
    expanded = index.view(*index.shape, *([1] * (tensor.dim() - 3))).expand(*index.shape, *tensor.shape[3:])
    return tensor.gather(2, expanded)


class RaggedKVCache(Cache):
    """A ``transformers.Cache`` with per-head eviction; pass it as ``cache=`` to a model or ``generate``.

    Bound to a :class:`~namm_suite.manager.MemoryManager`, it asks the manager at the start of every forward
    pass (first layer's update) whether a scheduled memory update is due, so evictions happen between passes,
    after the previous pass's logits were computed, also inside ``model.generate``.
    """

    def __init__(self, manager: MemoryManager | None = None) -> None:
        super().__init__(layers=[])
        self.manager = manager
        self.incoming_valid: torch.Tensor | None = None  # bool [B, q] of the current pass (ragged batches)

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        while len(self.layers) <= layer_idx:
            shapes = self.manager.policy.token_state if self.manager is not None else {}
            self.layers.append(RaggedLayer(len(self.layers), shapes, self.manager))
        if layer_idx == 0 and self.manager is not None:
            self.manager.on_pass_start(self)
        keys, values = self.layers[layer_idx].update(key_states, value_states, *args, valid=self.incoming_valid,
                                                      **kwargs)
        if self.manager is not None:
            self.manager.on_layer_update(self.layers[layer_idx])
        return keys, values

    @property
    def seen_tokens(self) -> int:
        return self.layers[0].seen if self.layers else 0

    def held_per_layer(self) -> torch.Tensor:
        """float ``[n_layers]`` mean tokens held per head in each layer."""
        return torch.stack([layer.held().float().mean() for layer in self.layers])

    def nbytes(self) -> int:
        """Bytes of all key/value tensors currently allocated."""
        return sum(layer.nbytes() for layer in self.layers)

    def ideal_nbytes(self) -> int:
        """Bytes the held tokens would take with no padding: sum over layers/heads of held × bytes/token."""
        return sum(int(layer.held().sum()) * layer.bytes_per_token() for layer in self.layers)

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("RaggedKVCache cannot be cropped (assisted decoding is not supported)")
