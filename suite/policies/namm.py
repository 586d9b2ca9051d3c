"""The NAMM memory policy: features -> BAM scores -> eviction, per layer and KV head."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..namm.checkpoint import NammHyperParams, check_kernel, load_namm, save_namm
from ..namm.features import CONTEXT, HOP, N_BINS, RunningStats, build_features, update_ema_from_rows
from ..namm.params import BamParams
from ..namm.scorer import bam_scores, pool_scores
from ..namm.selection import SELECTIONS
from .base import MemoryPolicy, PolicyView, register_policy
from .spec import NAMM

EMA_KEY = "namm_ema"
CONTEXT_KEY = "namm_ctx"


@register_policy(NAMM)
@dataclass
class NammPolicy(MemoryPolicy):
    """Neural Attention Memory Model (BAM): evolved scores from attention spectrograms decide what to keep.

    Cetin et al., "An Evolved Universal Transformer Memory", ICLR 2025, as specified in
    ``docs/namm-spec.md``.
    At each update every cached token gets a feature vector (an EMA of the magnitude spectrogram of the
    attention it received, standardised with frozen μ, v, plus a sinusoidal encoding of its age); a
    backward-masked attention layer (the BAM, θ = 4172 evolved floats) scores all tokens of a head at once,
    and tokens with negative scores are evicted. The newest token is always kept.

    Fields:
        checkpoint: path of a NAMM checkpoint (``<path>.safetensors`` + ``<path>.json``); None gives
            θ = 0, μ = 0, v = 1, which scores every token exactly 0 and so evicts nothing.
        selection: "kappa" (reference: every head keeps κ = max_h #{score ≥ 0} tokens, so the cache
            stays rectangular) or "threshold" (each head keeps exactly its non-negative tokens; ragged,
            frees more memory, a deliberate deviation from the reference).
        collect_stats: add the un-standardised EMA vectors of valid tokens to ``self.stats`` at every
            update (to measure μ, v in a full-cache pass with θ = 0, docs/namm-spec.md §7).
        kernel: odd width of a max-pooling of the scores over neighbouring cache slots before selection
            (:func:`~namm_suite.namm.scorer.pool_scores`, a deviation); None takes the checkpoint's
            (``hparams.kernel``; 1 without a checkpoint); 1, the reference, pools nothing.
        gamma: the per-query EMA coefficient of the features; None takes the checkpoint's (``hparams.gamma``,
            0.99 as the spec). A smaller one weighs the newest queries more (a deviation).

    ``view.budget``, when given, caps the tokens kept per head; the reference runs without one. Tokens in
    ``view.protected`` are always kept (they rank like the newest token).
    """

    checkpoint: str | None = None
    selection: str = "kappa"
    collect_stats: bool = False
    kernel: int | None = None
    gamma: float | None = None

    needs_attention: ClassVar[bool] = True
    attention_rows: ClassVar[int | None] = None
    budget_rule: ClassVar[str] = "cap"
    update_multiple: ClassVar[int] = HOP
    token_state: ClassVar[dict[str, tuple[int, ...]]] = {EMA_KEY: (N_BINS,), CONTEXT_KEY: (CONTEXT,)}

    def __post_init__(self) -> None:
        if self.selection not in SELECTIONS:
            raise ValueError(
                f"NammPolicy.selection must be one of {sorted(SELECTIONS)}, got {self.selection!r}"
            )
        self.params = BamParams()
        self.mu = torch.zeros(N_BINS)
        self.var = torch.ones(N_BINS)
        self.stats_count = 0
        self.hparams = NammHyperParams(selection=self.selection)
        self.provenance: dict[str, Any] = {}
        self.stats = RunningStats(N_BINS)
        if self.checkpoint is not None:
            # the checkpoint's selection rule is informative only: running the other rule is an option
            ckpt = load_namm(self.checkpoint, NammHyperParams(), ignore=("selection", "kernel", "gamma"))
            self.params, self.stats_count = ckpt.params, ckpt.count
            self.mu, self.var = ckpt.mu, ckpt.var
            self.hparams, self.provenance = ckpt.hparams, ckpt.provenance
        if self.kernel is None:
            self.kernel = self.hparams.kernel
        check_kernel(self.kernel, "NammPolicy.kernel")
        if self.gamma is None:
            self.gamma = self.hparams.gamma
        if not 0 < self.gamma < 1:
            raise ValueError(f"NammPolicy.gamma must lie in (0, 1), got {self.gamma!r}")
        self.hparams = dataclasses.replace(self.hparams, kernel=self.kernel, gamma=self.gamma)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], **fields: Any) -> NammPolicy:
        """``NammPolicy(checkpoint=path, **fields)``."""
        return cls(checkpoint=os.fspath(path), **fields)

    def vector(self) -> torch.Tensor:
        """θ as a flat float32 ``[4172]`` vector (docs/namm-spec.md §6 order)."""
        return self.params.to_vector()

    def set_vector(self, theta: Any) -> None:
        """Replace θ with a flat vector of 4172 floats (e.g. a CMA-ES candidate)."""
        self.params = BamParams().from_vector(theta)

    def set_vectors(self, thetas: Any) -> None:
        """One θ per batch row: ``thetas`` ``[R, 4172]`` (R population members evaluated in one batched pass;
        batch row b is scored with ``thetas[b]``, and the batch must then have exactly R rows)."""
        self.params = BamParams.from_vectors(thetas)

    def set_stats(self, mu: torch.Tensor, var: torch.Tensor, count: int = 0) -> None:
        """Replace the frozen standardisation statistics μ, v (float ``[17]``)."""
        for name, value in (("mu", mu), ("var", var)):
            if tuple(value.shape) != (N_BINS,):
                raise ValueError(f"{name} must have shape ({N_BINS},), got {tuple(value.shape)}")
        self.mu, self.var, self.stats_count = mu.float().cpu(), var.float().cpu(), int(count)

    def save(self, path: str | os.PathLike[str], provenance: dict[str, Any] | None = None) -> None:
        """Write θ, μ, v and hyper-parameters as a checkpoint (see :func:`save_namm`)."""
        save_namm(path, self.params, self.mu, self.var, self.stats_count, self.hparams, provenance or {})

    def _features_once(self, view: PolicyView, ema: torch.Tensor, context: torch.Tensor,
                       lead: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """The updated ``(ema, context)``, computed once for all the cells of a shared prefix: they depend
        only on the attention rows, the stored state and γ (never on θ, μ, v or the cache size)."""
        key = ("namm_features", view.layer, self.gamma, view.num_new, tuple(view.attn.shape))
        memo = view.prefix_memo
        if memo is not None and key in memo:
            return memo[key]
        out = update_ema_from_rows(view.attn[lead], ema, context, view.num_new, self.gamma)
        if memo is not None:
            memo[key] = out
        return out

    @torch.no_grad()
    def select(self, view: PolicyView) -> torch.Tensor:
        """Update the per-token EMA/context state in ``view.state`` and return the bool keep mask.

        Reads ``view.attn`` float ``[B, H, n, K]`` (n a multiple of 16), ``num_new``, ``positions``,
        ``valid`` and the state tensors ``namm_ema [B, H, K, 17]`` / ``namm_ctx [B, H, K, 16]``, which it
        overwrites with their updated values (zeros on padding) for the cache to gather.
        """
        if view.attn is None:
            raise ValueError("NammPolicy needs attention rows, but view.attn is None")
        for key in (EMA_KEY, CONTEXT_KEY):
            if key not in view.state:
                raise ValueError(f"view.state lacks {key!r}: the cache must carry NammPolicy.token_state")
        valid = view.valid.bool()
        if self.params.rows is not None and self.params.rows != valid.shape[0]:
            raise ValueError(f"NammPolicy holds {self.params.rows} parameter rows but the batch has "
                             f"{valid.shape[0]} rows")
        ema, context = view.state[EMA_KEY], view.state[CONTEXT_KEY]
        # with fewer than one hop since the last update, the tokens are scored on their stored features;
        # rows that share one prefix share its features, which are computed once
        lead = slice(0, 1) if view.shared_rows else slice(None)
        ema, context = self._features_once(view, ema[lead], context[lead], lead)
        if view.shared_rows:
            ema, context = (t.expand(valid.shape[0], *t.shape[1:]) for t in (ema, context))
        ema = ema.masked_fill(~valid[..., None], 0.0)
        context = context.masked_fill(~valid[..., None], 0.0)
        view.state[EMA_KEY], view.state[CONTEXT_KEY] = ema, context
        if self.collect_stats:
            self.stats.update(ema[valid])

        device = ema.device
        self.params.to(device)
        self.mu, self.var = self.mu.to(device), self.var.to(device)
        features = build_features(ema, view.positions, valid, self.mu, self.var)
        scores = pool_scores(bam_scores(features, valid, self.params), valid, self.kernel)
        # Tokens the schedule protects rank like the newest token (+inf): kept, and counted in κ so the
        # cache stays rectangular. The reference protects only the newest (MemoryConfig.protected = 1).
        protected = getattr(view, "protected", None)
        if protected is not None:
            scores = scores.masked_fill(protected & valid, float("inf"))
        return SELECTIONS[self.selection](scores, valid, view.budget)


def full_cache_statistics(run_episode: Callable[[Any, NammPolicy], object], episodes: Iterable[Any],
                          gamma: float) -> RunningStats:
    """docs/namm-spec.md §7: μ, v of every un-standardised EMA vector of a full-cache (θ = 0) pass.

    ``run_episode(episode, policy)`` reads one episode under ``policy`` (however the caller schedules it);
    the statistics are collected under the EMA coefficient ``gamma`` the NAMM will run with."""
    policy = NammPolicy(collect_stats=True, gamma=gamma)
    for episode in episodes:
        run_episode(episode, policy)
    return policy.stats
