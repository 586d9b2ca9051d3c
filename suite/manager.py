"""MemoryManager: owns a memory policy, the ragged cache and the update schedule.

Adapters only create a cache with :meth:`MemoryManager.new_cache`, feed the model through
:meth:`MemoryManager.forward` (chunked prefill) or ``model.generate(cache=...)``, and read
:meth:`MemoryManager.stats`. The schedule follows the NAMM reference (docs/namm-spec.md §1): after every
forward pass, if the tokens seen ``T`` are a multiple of ``update_every``, one memory update runs on every
layer. It is applied lazily at the start of the next pass, so each pass's logits are computed before any
eviction.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch

from .attention_rows import RowBuffer, first_row_needed, next_update
from .cache import RaggedKVCache, RaggedLayer
from .memory_stats import Accumulator, MemoryStats, sequence_stats
from .policies.base import MemoryPolicy, PolicyView, recent_tokens

# How a prompt meets the memory (MemoryConfig.protocol); docs/protocols.md compares them.
PROTOCOLS = ("scheduled", "context", "query-aware")


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
        budget_fraction: a relative budget in (0, 1]: each sequence keeps ``round(fraction × n)`` tokens per
            head, ``n`` being the tokens of its compressed part (given to :meth:`MemoryManager.new_cache`);
            replaces ``budget``.
        protocol: how an adapter feeds a prompt (see :data:`PROTOCOLS`): ``scheduled`` (the NAMM paper:
            the whole prompt and the answer on the schedule), ``context`` (the context is compressed, then
            the question and the answer are read with no eviction, as kvpress) or ``query-aware`` (the
            question ends the compressed part, as SnapKV).
        evict: under ``context``/``query-aware``, ``schedule`` evicts on the schedule while the compressed
            part is read and once more at its end; ``once`` only at its end (kvpress, SnapKV).
    """

    update_every: int = 512
    budget: int | None = None
    protected: int = 1
    sink_tokens: int = 0
    chunk_size: int | None = None
    budget_fraction: float | None = None
    protocol: str = "scheduled"
    evict: str = "schedule"

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
        if self.budget_fraction is not None and not 0.0 < self.budget_fraction <= 1.0:
            raise ValueError(f"a relative cache budget must lie in (0, 1], got {self.budget_fraction}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; valid: {', '.join(PROTOCOLS)}")
        if self.evict not in ("schedule", "once"):
            raise ValueError(f"evict must be 'schedule' or 'once', got {self.evict!r}")
        if self.evict == "once" and self.protocol == "scheduled":
            raise ValueError("evict='once' needs the context or query-aware protocol (scheduled evicts on "
                             "the schedule)")
        if self.chunk_size is None:
            self.chunk_size = self.update_every
        if self.chunk_size <= 0 or self.update_every % self.chunk_size:
            raise ValueError(f"chunk_size {self.chunk_size} must divide update_every {self.update_every}")

    @property
    def one_shot(self) -> bool:
        """The compressed part is evicted only once, at its end (``evict='once'`` under ``context`` or
        ``query-aware``): nothing is evicted while it is read."""
        return self.evict == "once" and self.protocol != "scheduled"


class MemoryManager:
    """Runs a :class:`MemoryPolicy` over a :class:`RaggedKVCache` on the schedule of a :class:`MemoryConfig`.

    ``rows`` R > 1 reads one-row inputs as R identical batch rows that differ only in their memory (e.g.
    population members, one NAMM θ per row): the prompt up to the first memory update is computed once, at
    batch 1, and its cache copied to the R rows just before that update; outputs have R rows.
    """

    def __init__(self, policy: MemoryPolicy, config: MemoryConfig | None = None, rows: int = 1) -> None:
        self.policy = policy
        self.config = config or MemoryConfig()
        if rows < 1:
            raise ValueError(f"rows must be >= 1, got {rows}")
        self.rows = rows
        if policy.uses_budget and self.config.budget is None and self.config.budget_fraction is None:
            raise ValueError(f"policy {policy.name!r} needs a cache budget (tokens per head)")
        self._attention: dict[int, RowBuffer] = {}
        self._acc = Accumulator()
        self._last_update_seen = 0
        self.cache: RaggedKVCache | None = None
        self.budget = self.config.budget  # tokens per head of the current sequence
        self.frozen = False  # after freeze(): no more evictions, every later token stays
        self._answer_kept = self._context_kept = 0.0
        self._context_tokens = 0
        self._cells_memo: dict = {}  # PolicyView.prefix_memo of the cells started from this manager
        self._prefix_memo: dict | None = None  # that of the prefix this manager started from

    @property
    def needs_attention(self) -> bool:
        return self.policy.needs_attention and not self.frozen

    def new_cache(self, context_tokens: int | None = None) -> RaggedKVCache:
        """Start a new sequence: a fresh cache, cleared policy state, statistics and attention buffers.

        ``context_tokens``: tokens of the part of the prompt that is compressed; required with a relative
        budget, which becomes ``round(budget_fraction × context_tokens)`` tokens per head (at least the
        protected and sink tokens).
        """
        cfg = self.config
        if cfg.budget_fraction is not None:
            if context_tokens is None:
                raise ValueError("a relative cache budget needs the length of the compressed part")
            self.budget = max(round(cfg.budget_fraction * context_tokens), cfg.protected + cfg.sink_tokens, 1)
        self._context_tokens = context_tokens or 0
        self.frozen = False
        self._answer_kept = self._context_kept = 0.0
        self.policy.reset(0)
        self._attention = {}
        self._acc = Accumulator()
        self._last_update_seen = 0
        self.cache = RaggedKVCache(self)
        return self.cache

    def start_from(self, source: MemoryManager) -> RaggedKVCache:
        """Start a sequence from a copy of ``source``'s: its cache, the attention rows this manager's policy
        reads and the statistics so far (see :mod:`~namm_suite.shared_prefix`).

        ``source`` must not have run a memory update or frozen (so nothing it holds depends on its policy)
        and, when this policy reads attention, must have recorded every row. The relative budget is taken
        from ``source``'s compressed-part length; per-token policy state starts at zero, as in a new cache.
        """
        if source._acc.n_updates or source.frozen or source.cache is None:
            raise ValueError("a shared prefix must be read with no memory update and before freezing")
        if self.policy.needs_attention and (not source.needs_attention or source.policy.attention_rows is not None):
            raise ValueError(f"policy {self.policy.name!r} reads attention: the shared prefix must record every row")
        self.new_cache(source._context_tokens or None)
        cache = copy.deepcopy(source.cache, memo={id(source): self})
        for layer in cache.layers:
            layer.token_state_shapes = dict(self.policy.token_state)
            if layer.is_initialized:
                batch, heads, slots = layer.valid.shape
                layer.state = {name: torch.zeros((batch, heads, slots, *shape), device=layer.device)
                               for name, shape in layer.token_state_shapes.items()}
        self.cache, self._acc = cache, copy.deepcopy(source._acc)
        self._prefix_memo = source._cells_memo
        if self.policy.needs_attention:
            self._attention = {i: rows.newest(self.policy.attention_rows, self._slots(i))
                               for i, rows in source._attention.items()}
        return cache

    def release(self) -> None:
        """Drop the cache and the recorded attention now (the manager and its cache refer to each other, so
        without this their tensors wait for Python's cycle collector)."""
        self._attention, self.cache = {}, None
        self._cells_memo, self._prefix_memo = {}, None

    def _slots(self, layer_idx: int) -> int:
        """Columns of layer ``layer_idx``'s attention rows: its slots plus those it dropped since the update."""
        layer = self.cache.layers[layer_idx]
        return layer.dropped + layer.keys.shape[-2]

    # ---- called by the cache and the attention hook -------------------------------------------------
    def on_pass_start(self, cache: RaggedKVCache) -> None:
        """First layer of a new forward pass: run the memory update the schedule asks for, if any."""
        if self._update_due(cache):
            self.update(cache)
        if self._acc.pass_bytes:
            self._acc.peak_bytes = max(self._acc.peak_bytes, self._acc.pass_bytes)
        self._acc.pass_bytes = 0

    def on_layer_update(self, layer: RaggedLayer) -> None:
        """After a layer appended its new tokens: account for the keys the new queries attend to."""
        queries = layer.query_positions.shape[-1]
        # a uniform single sequence holds every slot: no reduction (and no device sync) needed
        uniform = layer.uniform and layer.keys.shape[0] == 1
        held = float(layer.keys.shape[-2]) if uniform else float(layer.held().float().mean())
        if layer.layer_idx == 0:
            self._acc.query_count += queries
        self._acc.kept_sum += held * queries
        by_type = self._acc.kept_by_type
        by_type[layer.layer_type] = by_type.get(layer.layer_type, 0.0) + held * queries
        self._acc.peak_kept = max(self._acc.peak_kept, held)
        self._acc.pass_bytes += layer.nbytes()
        if layer.keys.shape[0] > 1:
            self._account_rows(layer)

    def _account_rows(self, layer: RaggedLayer) -> None:
        """Per batch row of a batched pass: keys held × real (not padding) queries, for :meth:`mean_kept_rows`."""
        acc, incoming = self._acc, self.cache.incoming_valid if self.cache is not None else None
        batch, queries = layer.keys.shape[0], layer.query_positions.shape[-1]
        real = (incoming.sum(-1).double() if incoming is not None
                else torch.full((batch,), float(queries), dtype=torch.float64))
        held = layer.held().double().mean(-1).cpu()
        if acc.kept_rows is None:
            acc.kept_rows, acc.query_rows = torch.zeros(batch, dtype=torch.float64), torch.zeros(batch, dtype=torch.float64)
        acc.kept_rows += held * real.cpu()
        if layer.layer_idx == 0:
            acc.query_rows += real.cpu()

    def mean_kept_rows(self) -> list[float]:
        """``mean_kept`` (:class:`MemoryStats`) of each batch row separately, over its real queries."""
        acc, cache = self._acc, self.cache
        if acc.kept_rows is None or cache is None:  # one row, or rows never spread (identical)
            return [self.stats().mean_kept] * self.rows
        return (acc.kept_rows / (acc.query_rows * len(cache.layers)).clamp_min(1)).tolist()

    def first_row_to_record(self, layer: RaggedLayer) -> int | None:
        """Index of the first of ``layer``'s latest query rows whose attention the policy will read at the
        next update (``None``: none; the hook then computes no probabilities)."""
        if not self.needs_attention:
            return None
        return first_row_needed(layer.seen, layer.query_positions.shape[-1], self.policy.attention_rows,
                                self._next_update(layer.seen))

    def _next_update(self, seen: int) -> int | None:
        """Tokens seen at the next update, when the schedule alone decides it (else ``None``)."""
        return next_update(seen, self.config.update_every) if self.config.protocol == "scheduled" else None

    def record_attention(self, layer: RaggedLayer, probs: torch.Tensor) -> None:
        """Keep the attention rows the policy needs. ``probs``: float32 ``[B, H, G, r, K]`` softmax
        probabilities of the G query heads of each KV head for the rows from :meth:`first_row_to_record`
        on; they are averaged over G (docs/namm-spec.md §2)."""
        rows = probs.float().mean(2)
        limit, target = self.policy.attention_rows, self._next_update(layer.seen)
        buffer = self._attention.get(layer.layer_idx)
        if buffer is None or (limit is not None and buffer.target != target):
            # tokens still to come before the update (one-shot: the rest of the compressed part), so that the
            # buffer is allocated once, not grown by doubling to up to 4x the memory
            if target is not None:
                ahead = target - layer.seen
            else:
                ahead = max(self._context_tokens - layer.seen, 0) if self.config.one_shot else 0
            buffer = RowBuffer(rows, limit or rows.shape[2] + ahead, layer.dropped + rows.shape[3] + ahead,
                               limit, target)
            self._attention[layer.layer_idx] = buffer
        buffer.add(rows, layer.dropped)

    # ---- the protocol: freezing after the compressed part, the cache the answer starts from ----------
    def _update_due(self, cache: RaggedKVCache) -> bool:
        """A scheduled update is due: ``T`` is a multiple of U not yet updated at, the manager is not
        frozen, and the protocol does not defer eviction to the end of the compressed part."""
        seen = cache.seen_tokens
        if self.frozen or self.config.one_shot:
            return False
        return bool(seen) and seen % self.config.update_every == 0 and seen != self._last_update_seen

    def freeze(self) -> None:
        """End of the compressed part: one memory update on what is left since the last one (a one-shot
        compression under ``evict='once'``), then no more evictions for this sequence, so every later token
        (question, answer) is kept. Attention is no longer recorded."""
        cache = self.cache
        if cache is None or self.frozen:
            return
        if cache.layers and cache.seen_tokens != self._last_update_seen:
            self.update(cache)
        self.frozen = True
        self._attention = {}
        self._context_kept = float(cache.held_per_layer().mean()) if cache.layers else 0.0

    def answer_start(self) -> None:
        """The prompt is read and the answer begins: run the scheduled update due before the next pass, if
        any (the same one the pass would run), and record the keys held per head (``answer_kept``)."""
        cache = self.cache
        if cache is None or not cache.layers:
            return
        if self._update_due(cache):
            self.update(cache)
        self._answer_kept = float(cache.held_per_layer().mean())
        if not self.frozen:  # scheduled: the whole prompt is the compressed part
            self._context_kept = self._answer_kept

    # ---- the memory update --------------------------------------------------------------------------
    def update(self, cache: RaggedKVCache) -> None:
        """One memory update on every layer: build each layer's view, ask the policy, evict, compact."""
        start = time.perf_counter()
        spread = self._spread_rows(cache)
        memo = self._prefix_memo if not self._acc.n_updates else None  # only the first update is shared
        for layer in cache.layers:
            next_position = layer.query_positions.amax(-1)[:, None, None] + 1  # [B, 1, 1]: per batch row
            layer.drop_outside_window(int(next_position.min()))
            view = self._view(layer, shared_rows=spread, prefix_memo=memo)
            keep = self._select(layer, view) & ~layer.outside_window(next_position)
            layer.state.update(view.state)
            layer.compact(keep)
            self._attention.pop(layer.layer_idx, None)
        self._last_update_seen = cache.seen_tokens
        self._acc.n_updates += 1
        self._acc.update_seconds += time.perf_counter() - start

    def _spread_rows(self, cache: RaggedKVCache) -> bool:
        """Before the first eviction: copy a one-row cache, its attention rows and its per-row statistics to
        :attr:`rows` rows; True when it did (False when already spread or ``rows`` is 1)."""
        if self.rows == 1 or self._cache_rows(self.rows) != 1:
            return False
        for layer in cache.layers:
            layer.repeat_rows(self.rows)
        for buffer in self._attention.values():
            buffer.repeat_rows(self.rows)
        acc = self._acc
        acc.kept_rows = torch.full((self.rows,), acc.kept_sum, dtype=torch.float64)
        acc.query_rows = torch.full((self.rows,), float(acc.query_count), dtype=torch.float64)
        return True

    def _cache_rows(self, default: int) -> int:
        """Batch rows the cache holds (``default`` before its first token)."""
        layers = self.cache.layers if self.cache is not None else []
        return layers[0].keys.shape[0] if layers and layers[0].is_initialized else default

    def _select(self, layer: RaggedLayer, view: PolicyView) -> torch.Tensor:
        """The policy's checked keep mask. On a sliding-window layer the budget applies only where it is
        smaller than the window; a budgeted policy with no budget left to apply keeps every slot."""
        if layer.sliding_window is not None and view.budget is not None and view.budget >= layer.sliding_window:
            view.budget = None
        if self.policy.uses_budget and view.budget is None and self.budget is not None:
            return view.valid.clone()
        keep = self.policy.select(view)
        self._check_keep(keep, view)
        return keep

    def _view(self, layer: RaggedLayer, shared_rows: bool = False, prefix_memo: dict | None = None) -> PolicyView:
        attn = None
        if self.policy.needs_attention:
            buffer = self._attention.get(layer.layer_idx)
            if buffer is None:
                from .attention import ATTN_IMPLEMENTATION

                raise RuntimeError(f"policy {self.policy.name!r} needs attention but none was recorded: "
                                   f"load the model with attn_implementation={ATTN_IMPLEMENTATION!r}")
            attn = buffer.read(layer.dropped, layer.keys.shape[-2])
        return PolicyView(
            layer=layer.layer_idx,
            attn=attn,
            keys=layer.keys,
            values=layer.values,
            positions=layer.positions,
            valid=layer.valid,
            num_new=layer.num_new,
            budget=self.budget,
            state=dict(layer.state),
            protected=self._protected_mask(layer),
            shared_rows=shared_rows,
            prefix_memo=prefix_memo,
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
                inputs_embeds: torch.Tensor | None = None, all_logits: bool = False,
                valid: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                logits_from: int | None = None, **kwargs) -> torch.Tensor:
        """Feed ``input_ids [B, T]`` or ``inputs_embeds [B, T, E]`` in schedule-aligned chunks through
        ``model`` with the manager's cache; return the logits of the last position ``[B, V]``, or of every
        position ``[B, T, V]`` with ``all_logits`` (teacher forcing), or of positions ``logits_from`` to
        ``T - 1`` ``[B, T - logits_from, V]`` (scoring a continuation: each pass computes only those).

        A ragged batch (see :func:`namm_suite.batching.pad_rows`) gives ``valid`` bool ``[B, T]`` (False on
        padding, which is cached as invalid slots: never attended to, never kept) and ``position_ids``
        int64 ``[B, T]`` (each row's own positions). With :attr:`rows` > 1 a one-row input is read as that
        many rows (its shared prefix once) and the logits have :attr:`rows` rows."""
        if self.cache is None:
            self.new_cache()
        data = input_ids if input_ids is not None else inputs_embeds
        first = 0 if all_logits else logits_from  # the first position whose logits are returned; None: the last
        if first is not None and not 0 <= first < data.shape[1]:
            raise ValueError(f"logits_from must lie in [0, {data.shape[1]}) for {data.shape[1]} tokens, got {first}")
        logits = []
        try:
            for start, end in self.chunk_bounds(data.shape[1], self.cache.seen_tokens):
                if self.rows > 1 and self._update_due(self.cache):
                    self._spread_rows(self.cache)  # the update at this pass's start evicts per row
                piece = data[:, start:end]
                piece = piece.expand(self._cache_rows(piece.shape[0]), *piece.shape[1:])
                chunk = {"input_ids": piece} if input_ids is not None else {"inputs_embeds": piece}
                if position_ids is not None:
                    chunk["position_ids"] = position_ids[:, start:end]
                self.cache.incoming_valid = None if valid is None else valid[:, start:end]
                keep = 1 if first is None else end - max(start, first)  # logits_to_keep=0 would mean "all"
                out = model(**chunk, cache=self.cache, use_cache=True, logits_to_keep=max(keep, 1), **kwargs)
                if keep > 0:
                    logits.append(out.logits[:, -keep:])
        finally:
            self.cache.incoming_valid = None
        rows = max(self.rows, data.shape[0])
        logits = [out.expand(rows, *out.shape[1:]) for out in logits]
        return logits[-1][:, -1] if first is None else torch.cat(logits, dim=1)

    def stats(self) -> MemoryStats:
        """Statistics of the current sequence so far."""
        cache = self.cache
        if cache is None or not cache.layers:
            return MemoryStats()
        return sequence_stats(self._acc, cache, answer_kept=self._answer_kept, context_tokens=self._context_tokens,
                              context_kept=self._context_kept, budget_tokens=self.budget or 0)
