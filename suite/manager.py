"""MemoryManager: owns a memory policy, the ragged cache and the update schedule.

Adapters only create a cache with :meth:`MemoryManager.new_cache`, feed the model through
:meth:`MemoryManager.forward` (chunked prefill) or ``model.generate(cache=...)``, and read
:meth:`MemoryManager.stats`. The schedule follows the NAMM reference (docs/namm-spec.md §1): after every
forward pass, if the tokens seen ``T`` are a multiple of ``update_every``, one memory update runs on every
layer. It is applied lazily at the start of the next pass, so each pass's logits are computed before any
eviction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .cache import RaggedKVCache, RaggedLayer
from .policies.base import MemoryPolicy, PolicyView, recent_tokens


@dataclass
class MemoryConfig:
    """The memory schedule shared by every policy.

    Attributes:
        update_every: U, tokens between memory updates (paper: 512; must be a multiple of 16 for the NAMM;
            short CPU contexts use 32–128). Also the default prefill chunk.
        budget: tokens per KV head kept after each update (``None``: the policy decides, e.g. the NAMM).
        protected: newest tokens per head that are never evicted (the NAMM reference protects 1).
        sink_tokens: oldest tokens (by position) that are never evicted (0 = none).
        chunk_size: prefill chunk; chunks end on multiples of it. Defaults to ``update_every``; it must
            divide ``update_every`` so that every update sees exactly U new queries.
    """

    update_every: int = 512
    budget: int | None = None
    protected: int = 1
    sink_tokens: int = 0
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        if self.update_every <= 0:
            raise ValueError(f"update_every must be > 0, got {self.update_every}")
        if self.budget is not None and self.budget <= 0:
            raise ValueError(f"cache budget must be > 0 tokens per head, got {self.budget}")
        if self.protected < 0 or self.sink_tokens < 0:
            raise ValueError("protected and sink_tokens must be >= 0")
        if self.budget is not None and self.protected + self.sink_tokens > self.budget:
            raise ValueError(
                f"budget {self.budget} cannot hold {self.protected} protected + {self.sink_tokens} sink tokens"
            )
        if self.chunk_size is None:
            self.chunk_size = self.update_every
        if self.chunk_size <= 0 or self.update_every % self.chunk_size:
            raise ValueError(f"chunk_size {self.chunk_size} must divide update_every {self.update_every}")


@dataclass
class MemoryStats:
    """What a run held. Token counts are per KV head, averaged over layers and heads.

    Attributes:
        mean_kept: keys held when attending, averaged over every query token (the effective cache size).
        peak_kept: largest number of keys held when attending.
        final_kept: tokens held after the last pass.
        peak_kv_bytes / final_kv_bytes: bytes of all key/value tensors (padding included).
        padding_overhead: final_kv_bytes / (held tokens × bytes per token) − 1.
        n_updates: memory updates run; update_seconds: time spent in them (features, scoring, eviction).
    """

    mean_kept: float = 0.0
    peak_kept: float = 0.0
    final_kept: float = 0.0
    peak_kv_bytes: int = 0
    final_kv_bytes: int = 0
    padding_overhead: float = 0.0
    n_updates: int = 0
    update_seconds: float = 0.0
    tokens_seen: int = 0

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


@dataclass
class _Accumulator:
    kept_sum: float = 0.0
    query_count: int = 0
    peak_kept: float = 0.0
    peak_bytes: int = 0
    pass_bytes: int = 0
    n_updates: int = 0
    update_seconds: float = 0.0


class MemoryManager:
    """Runs a :class:`MemoryPolicy` over a :class:`RaggedKVCache` on the schedule of a :class:`MemoryConfig`."""

    def __init__(self, policy: MemoryPolicy, config: MemoryConfig | None = None) -> None:
        self.policy = policy
        self.config = config or MemoryConfig()
        if policy.uses_budget and self.config.budget is None and policy.name != "full":
            raise ValueError(f"policy {policy.name!r} needs a cache budget (tokens per head)")
        self._attention: dict[int, list[torch.Tensor]] = {}
        self._acc = _Accumulator()
        self._last_update_seen = 0
        self.cache: RaggedKVCache | None = None

    @property
    def needs_attention(self) -> bool:
        return self.policy.needs_attention

    def new_cache(self) -> RaggedKVCache:
        """Start a new sequence: a fresh cache, cleared policy state, statistics and attention buffers."""
        self.policy.reset(0)
        self._attention = {}
        self._acc = _Accumulator()
        self._last_update_seen = 0
        self.cache = RaggedKVCache(self)
        return self.cache

    # ---- called by the cache and the attention hook -------------------------------------------------
    def on_pass_start(self, cache: RaggedKVCache) -> None:
        """First layer of a new forward pass: run the memory update the schedule asks for, if any."""
        seen = cache.seen_tokens
        if seen and seen % self.config.update_every == 0 and seen != self._last_update_seen:
            self.update(cache)
        if self._acc.pass_bytes:
            self._acc.peak_bytes = max(self._acc.peak_bytes, self._acc.pass_bytes)
        self._acc.pass_bytes = 0

    def on_layer_update(self, layer: RaggedLayer) -> None:
        """After a layer appended its new tokens: account for the keys the new queries attend to."""
        queries = layer.query_positions.shape[-1]
        held = float(layer.held().float().mean())
        if layer.layer_idx == 0:
            self._acc.query_count += queries
        self._acc.kept_sum += held * queries
        self._acc.peak_kept = max(self._acc.peak_kept, held)
        self._acc.pass_bytes += layer.nbytes()

    def record_attention(self, layer: RaggedLayer, probs: torch.Tensor) -> None:
        """Keep the attention rows the policy needs. ``probs``: float32 ``[B, H, G, q, K]`` softmax
        probabilities of the G query heads of each KV head; they are averaged over G (docs/namm-spec.md
        §2)."""
        rows = probs.float().mean(2)
        buffer = self._attention.setdefault(layer.layer_idx, [])
        buffer.append(rows)
        limit = self.policy.attention_rows
        if limit is not None:
            while len(buffer) > 1 and sum(r.shape[2] for r in buffer[1:]) >= limit:
                buffer.pop(0)

    # ---- the memory update --------------------------------------------------------------------------
    def update(self, cache: RaggedKVCache) -> None:
        """One memory update on every layer: build each layer's view, ask the policy, evict, compact."""
        start = time.perf_counter()
        for layer in cache.layers:
            view = self._view(layer)
            keep = self.policy.select(view)
            self._check_keep(keep, view)
            layer.state.update(view.state)
            layer.compact(keep)
            self._attention.pop(layer.layer_idx, None)
        self._last_update_seen = cache.seen_tokens
        self._acc.n_updates += 1
        self._acc.update_seconds += time.perf_counter() - start

    def _view(self, layer: RaggedLayer) -> PolicyView:
        attn = None
        if self.policy.needs_attention:
            attn = _stack_rows(self._attention.get(layer.layer_idx, []), layer.keys.shape[-2], self.policy)
        return PolicyView(
            layer=layer.layer_idx,
            attn=attn,
            keys=layer.keys,
            values=layer.values,
            positions=layer.positions,
            valid=layer.valid,
            num_new=layer.num_new,
            budget=self.config.budget,
            state=dict(layer.state),
            protected=self._protected_mask(layer),
        )

    def _protected_mask(self, layer: RaggedLayer) -> torch.Tensor:
        """Bool ``[B, H, K]``: the newest ``protected`` and the oldest ``sink_tokens`` valid tokens."""
        cfg = self.config
        mask = recent_tokens(layer.positions, layer.valid, cfg.protected)
        if cfg.sink_tokens:
            mask |= layer.valid & (layer.positions < cfg.sink_tokens)
        return mask

    def _check_keep(self, keep: torch.Tensor, view: PolicyView) -> None:
        name = self.policy.name
        if keep.shape != view.valid.shape or keep.dtype != torch.bool:
            raise RuntimeError(f"policy {name!r} returned keep {tuple(keep.shape)} {keep.dtype}, "
                               f"expected bool {tuple(view.valid.shape)}")
        if (keep & ~view.valid).any():
            raise RuntimeError(f"policy {name!r} kept padding slots in layer {view.layer}")
        if self.policy.uses_budget and (view.protected & ~keep).any():
            raise RuntimeError(f"policy {name!r} evicted a protected token in layer {view.layer}")
        if self.policy.uses_budget and view.budget is not None:
            expected = view.valid.sum(-1).clamp(max=view.budget)
            if not torch.equal(keep.sum(-1), expected):
                raise RuntimeError(f"policy {name!r} did not keep exactly its budget in layer {view.layer}")

    # ---- driving a model ----------------------------------------------------------------------------
    def chunk_bounds(self, n_tokens: int, already_seen: int = 0) -> list[tuple[int, int]]:
        """``(start, end)`` slices of an input of ``n_tokens`` whose absolute ends fall on multiples of
        ``chunk_size`` (the last one may be shorter)."""
        size = self.config.chunk_size
        bounds, start = [], 0
        while start < n_tokens:
            end = min(n_tokens, start + size - (already_seen + start) % size)
            bounds.append((start, end))
            start = end
        return bounds

    @torch.no_grad()
    def forward(self, model: torch.nn.Module, input_ids: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None, all_logits: bool = False, **kwargs) -> torch.Tensor:
        """Feed ``input_ids [B, T]`` or ``inputs_embeds [B, T, E]`` in schedule-aligned chunks through
        ``model`` with the manager's cache; return the logits of the last position ``[B, V]``, or of every
        position ``[B, T, V]`` with ``all_logits`` (teacher forcing)."""
        if self.cache is None:
            self.new_cache()
        data = input_ids if input_ids is not None else inputs_embeds
        logits = []
        for start, end in self.chunk_bounds(data.shape[1], self.cache.seen_tokens):
            chunk = {"input_ids": data[:, start:end]} if input_ids is not None else {
                "inputs_embeds": data[:, start:end]}
            out = model(**chunk, cache=self.cache, use_cache=True, logits_to_keep=0 if all_logits else 1,
                        **kwargs)
            logits.append(out.logits)
        return torch.cat(logits, dim=1) if all_logits else logits[-1][:, -1]

    def stats(self) -> MemoryStats:
        """Statistics of the current sequence so far."""
        acc, cache = self._acc, self.cache
        if cache is None or not cache.layers:
            return MemoryStats()
        final_bytes = cache.nbytes()
        ideal = cache.ideal_nbytes()
        n_layers = len(cache.layers)
        return MemoryStats(
            mean_kept=acc.kept_sum / max(acc.query_count * n_layers, 1),
            peak_kept=acc.peak_kept,
            final_kept=float(cache.held_per_layer().mean()),
            peak_kv_bytes=max(acc.peak_bytes, acc.pass_bytes, final_bytes),
            final_kv_bytes=final_bytes,
            padding_overhead=final_bytes / ideal - 1 if ideal else 0.0,
            n_updates=acc.n_updates,
            update_seconds=acc.update_seconds,
            tokens_seen=cache.seen_tokens,
        )


def _stack_rows(rows: list[torch.Tensor], n_keys: int, policy: MemoryPolicy) -> torch.Tensor:
    """Concatenate recorded attention rows ``[B, H, q_i, K_i]`` into ``[B, H, Q, n_keys]``, zero-extending
    rows recorded when the cache was shorter (the cache only grows between updates)."""
    if not rows:
        raise RuntimeError(f"policy {policy.name!r} needs attention but none was recorded: "
                           "load the model with attn_implementation='namm'")
    padded = [torch.nn.functional.pad(r, (0, n_keys - r.shape[-1])) for r in rows]
    stacked = torch.cat(padded, dim=2)
    if policy.attention_rows is not None:
        stacked = stacked[:, :, -policy.attention_rows:]
    return stacked
