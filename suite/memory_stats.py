"""What a memory run held: :class:`MemoryStats` of one sequence, from the running sums a
:class:`~namm_suite.manager.MemoryManager` keeps (:class:`Accumulator`) and its cache."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .cache import RaggedKVCache


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
        answer_kept: keys held per head when the first answer token is read (after the prompt and any
            compression; the cache the answer starts from), beside the time-averaged ``mean_kept``.
        context_tokens: tokens of the compressed part (the whole prompt under ``scheduled``).
        context_kept: keys held per head of the compressed part once it is read (after the update at its
            end); ``context_kept / context_tokens`` is the fraction kept.
        budget_tokens: the budget per head this sequence ran with (resolved from a relative budget), or 0.
        by_layer_type: per transformers layer type (``"full_attention"``, ``"sliding_attention"``): its
            ``layers``, ``mean_kept``, ``final_kept`` and ``final_kv_bytes``.
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
    answer_kept: float = 0.0
    context_tokens: int = 0
    context_kept: float = 0.0
    budget_tokens: int = 0
    by_layer_type: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float | int]:
        """Flat numbers: ``by_layer_type`` becomes ``"<layer type>/<name>"`` keys."""
        flat = {k: v for k, v in self.__dict__.items() if k != "by_layer_type"}
        for kind, values in self.by_layer_type.items():
            flat.update({f"{kind}/{name}": value for name, value in values.items()})
        return flat


@dataclass
class Accumulator:
    """Running sums a :class:`~namm_suite.manager.MemoryManager` keeps while a sequence is read."""

    kept_sum: float = 0.0
    kept_by_type: dict[str, float] = field(default_factory=dict)
    query_count: int = 0
    peak_kept: float = 0.0
    peak_bytes: int = 0
    pass_bytes: int = 0
    n_updates: int = 0
    update_seconds: float = 0.0
    kept_rows: torch.Tensor | None = None  # float64 [B]: Σ held × real queries per batch row (B > 1)
    query_rows: torch.Tensor | None = None  # float64 [B]: real queries per batch row


def sequence_stats(acc: Accumulator, cache: RaggedKVCache, **context: float) -> MemoryStats:
    """:class:`MemoryStats` of a sequence read into ``cache`` (at least one layer) with running sums ``acc``;
    ``context``: ``answer_kept``, ``context_tokens``, ``context_kept`` and ``budget_tokens``."""
    final_bytes = cache.nbytes()
    ideal = cache.ideal_nbytes()
    return MemoryStats(
        mean_kept=acc.kept_sum / max(acc.query_count * len(cache.layers), 1),
        peak_kept=acc.peak_kept,
        final_kept=float(cache.held_per_layer().mean()),
        peak_kv_bytes=max(acc.peak_bytes, acc.pass_bytes, final_bytes),
        final_kv_bytes=final_bytes,
        padding_overhead=final_bytes / ideal - 1 if ideal else 0.0,
        n_updates=acc.n_updates,
        update_seconds=acc.update_seconds,
        tokens_seen=cache.seen_tokens,
        by_layer_type=stats_by_layer_type(acc, cache),
        **context,
    )


def stats_by_layer_type(acc: Accumulator, cache: RaggedKVCache) -> dict[str, dict[str, float]]:
    """Per transformers layer type: its ``layers``, ``mean_kept``, ``final_kept`` and ``final_kv_bytes``."""
    out = {}
    for kind in sorted({layer.layer_type for layer in cache.layers}):
        layers = [layer for layer in cache.layers if layer.layer_type == kind]
        out[kind] = {
            "layers": len(layers),
            "mean_kept": acc.kept_by_type.get(kind, 0.0) / max(acc.query_count * len(layers), 1),
            "final_kept": float(torch.stack([layer.held().float().mean() for layer in layers]).mean()),
            "final_kv_bytes": sum(layer.nbytes() for layer in layers),
        }
    return out
