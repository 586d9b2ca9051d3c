"""A starting point for evolution: fit the BAM scorer to predict the attention a token will receive.

CMA-ES from θ = 0 (docs/namm-spec.md §8) needs far more search than a CPU affords (results/evolution.md).
This module gives it a warm start, a documented deviation from the spec's m0 = 0:

1. **Record** (:func:`record_episode`): run the frozen model over a training episode (prompt + reference
   answer) with the NAMM at θ = 0, which keeps every token, and save at every scheduled update, for each layer
   and KV head, the features φ of every cached token (exactly what the NAMM sees there) and, from the same
   pass, the attention every later query (the rest of the prompt, the question and the answer) gives it.
2. **Fit** (:func:`fit_scorer`): by gradient descent on θ, make the BAM's scores of the tokens of one
   (update, layer, head) rank them as their *future* attention does: a listwise loss, the cross-entropy
   between ``softmax(scores)`` and the normalised future attention (the answer's attention counts extra).
3. **Calibrate** (:func:`calibrate_threshold`): shift the output bias b_c so that at its own threshold the
   NAMM keeps a chosen share of the tokens of the recorded updates.

The features are recorded under a full cache, so the fit ignores how eviction changes later features; the
evolution that starts from the fitted θ (``EvolutionConfig.init``) is run with the real memory.
"""

from __future__ import annotations

import io
import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..atomic import write_bytes_atomic
from ..manager import MemoryConfig, MemoryManager
from ..namm.features import CONTEXT, GAMMA, N_BINS, build_features, update_ema_from_rows
from ..namm.params import BamParams
from ..namm.scorer import bam_scores, pool_scores
from ..policies.base import PolicyView
from ..policies.namm import EMA_KEY, NammPolicy

logger = logging.getLogger(__name__)


@dataclass
class UpdateRecord:
    """One update of one layer: features ``[H, K, 25]`` (float16) of the K cached tokens and their
    future attention ``[H, K]`` (float32).

    A scheduled update's target is the mean attention from every later query plus ``answer_weight`` × the
    mean over the answer's queries. A ``one_shot`` record is the single eviction of the ``query-aware``
    protocol (``--evict once``) at the end of the prompt: ``seen`` is the prompt's length and the target is
    the answer's mean attention alone, the only attention still to come."""

    layer: int
    seen: int
    features: torch.Tensor
    target: torch.Tensor
    one_shot: bool = False


class _RecordingNamm(NammPolicy):
    """The NAMM with θ = 0 (keeps every token) that also saves each update's features."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.features: dict[tuple[int, int], torch.Tensor] = {}

    def select(self, view: PolicyView) -> torch.Tensor:
        keep = super().select(view)
        seen = int(view.positions.max()) + 1
        feats = build_features(view.state[EMA_KEY], view.positions, view.valid, self.mu, self.var)
        self.features[(view.layer, seen)] = feats[0].to(torch.float16)
        return keep


class _RecordingManager(MemoryManager):
    """A manager that also keeps every attention row it is handed (``[H, q, K]`` per pass and layer)."""

    def __init__(self, policy, config) -> None:
        super().__init__(policy, config)
        self.recorded: dict[int, list[torch.Tensor]] = {}

    def record_attention(self, layer, probs: torch.Tensor) -> None:
        super().record_attention(layer, probs)
        self.recorded.setdefault(layer.layer_idx, []).append(probs.float().mean(2)[0].to(torch.float16))


@torch.no_grad()
def record_episode(adapter, episode, mu: torch.Tensor, var: torch.Tensor, update_every: int,
                   answer_weight: float = 1.0, keep_updates: float = 1.0, seed: int = 0,
                   one_shot: bool = False, gamma: float = GAMMA) -> list[UpdateRecord]:
    """Features and future-attention targets of every (update, layer) of ``episode`` (or a random share
    ``keep_updates`` of them), with the NAMM statistics ``mu``, ``var`` and EMA coefficient ``gamma``; with
    ``one_shot`` also each layer's record of the query-aware protocol's one eviction (:class:`UpdateRecord`)."""
    policy = _RecordingNamm(gamma=gamma)
    policy.set_stats(mu, var)
    manager = _RecordingManager(policy, MemoryConfig(update_every=update_every))
    prompt = torch.cat(adapter.encode_parts(episode.inputs, episode.inputs.get("chat", True)), dim=1)
    answer = adapter.tokenizer(episode.references[0], add_special_tokens=False, return_tensors="pt").input_ids
    manager.new_cache()
    manager.forward(adapter.model, prompt)
    manager.forward(adapter.model, answer.to(prompt.device))
    total, n_prompt = prompt.shape[1] + answer.shape[1], prompt.shape[1]
    rng = random.Random(seed)
    records = []
    for layer, chunks in manager.recorded.items():
        rows = torch.zeros(chunks[0].shape[0], total, total)  # [H, query, key], queries in position order
        start = 0
        for chunk in chunks:
            rows[:, start:start + chunk.shape[1], :chunk.shape[2]] = chunk.float()
            start += chunk.shape[1]
        later = rows.flip(1).cumsum(1).flip(1)  # later[:, q] = sum of rows q.. end
        answer_mean = rows[:, n_prompt:].mean(1)
        for (lay, seen), feats in policy.features.items():
            if lay != layer or seen >= n_prompt or rng.random() > keep_updates:
                continue
            future = later[:, seen, :seen] / (total - seen)
            target = future + answer_weight * answer_mean[:, :seen]
            records.append(UpdateRecord(layer, seen, feats, target))
        if one_shot:
            feats = one_shot_features(rows[None, :, :n_prompt, :n_prompt], mu, var, gamma)[0].to(torch.float16)
            records.append(UpdateRecord(layer, n_prompt, feats, answer_mean[:, :n_prompt].clone(), one_shot=True))
    return records


def one_shot_features(attn: torch.Tensor, mu: torch.Tensor, var: torch.Tensor,
                      gamma: float = GAMMA) -> torch.Tensor:
    """The features ``[B, H, N, 25]`` the NAMM scores at a one-shot eviction of N tokens read with no earlier
    update, from their attention ``[B, H, N, N]`` (every row, as :meth:`NammPolicy.select` reads it), under
    the per-query EMA coefficient ``gamma``."""
    batch, heads, n, _ = attn.shape
    zeros = attn.new_zeros
    ema, _ = update_ema_from_rows(attn, zeros(batch, heads, n, N_BINS), zeros(batch, heads, n, CONTEXT), n, gamma)
    positions = torch.arange(n, device=attn.device).expand(batch, heads, n)
    return build_features(ema, positions, torch.ones_like(positions, dtype=torch.bool), mu, var)


def listwise_loss(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over lists of the cross-entropy between ``softmax(scores)`` and ``target`` normalised to sum 1;
    ``scores``, ``target``: ``[..., K]``."""
    p = target / target.sum(-1, keepdim=True).clamp_min(1e-12)
    return -(p * torch.log_softmax(scores, dim=-1)).sum(-1).mean()


@dataclass
class FitConfig:
    """Gradient descent on θ: ``steps`` Adam steps at learning rate ``lr``, one recorded update per step
    (all its heads), weight decay ``decay``; ``init_scale`` is the std of the random initial θ.
    ``one_shot_share``: the share of steps drawn from the one-shot records (None: uniform over all).
    ``target_power``: each list's target is raised to this power before it is normalised; below 1 it
    flattens lists that a few tokens (attention sinks) dominate, so the ranking of the rest weighs more."""

    steps: int = 3000
    lr: float = 3e-3
    decay: float = 1e-4
    init_scale: float = 0.02
    seed: int = 0
    one_shot_share: float | None = None
    target_power: float = 1.0
    log_every: int = 250
    history: list[tuple[int, float]] = field(default_factory=list)


def fit_scorer(records: list[UpdateRecord], config: FitConfig, params: BamParams | None = None) -> BamParams:
    """θ that minimises :func:`listwise_loss` of the BAM scores over ``records`` (a new BamParams unless given)."""
    if not records:
        raise ValueError("no recorded updates to fit")
    torch.manual_seed(config.seed)
    params = params or BamParams()
    if params.to_vector().abs().max() == 0:
        params.from_vector(torch.randn(params.to_vector().numel()) * config.init_scale)
    for p in params.parameters():
        p.requires_grad_(True)
    optimiser = torch.optim.AdamW(params.parameters(), lr=config.lr, weight_decay=config.decay)
    rng = random.Random(config.seed)
    pools = [[r for r in records if r.one_shot], [r for r in records if not r.one_shot]]
    share = config.one_shot_share
    if share is not None and not all(pools):
        raise ValueError("one_shot_share needs both one-shot and scheduled records (record with one_shot=True)")
    running = None
    for step in range(1, config.steps + 1):
        record = rng.choice(records) if share is None else rng.choice(pools[rng.random() >= share])
        x = record.features.float()
        scores = bam_scores(x, torch.ones(x.shape[:-1], dtype=torch.bool), params)
        loss = listwise_loss(scores, record.target.clamp_min(0) ** config.target_power)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        value = float(loss.detach())
        running = value if running is None else 0.98 * running + 0.02 * value
        if step % config.log_every == 0:
            config.history.append((step, running))
            logger.info("fit step %d loss %.4f", step, running)
    for p in params.parameters():
        p.requires_grad_(False)
    return params


@torch.no_grad()
def ranking_quality(records: list[UpdateRecord], scores_of, share: float = 0.25) -> float:
    """Mean share of the future attention held by the top ``share`` tokens that ``scores_of(record)``
    (``[H, K]``) ranks first, over ``records``: 1.0 would be the oracle's ideal at that cache size only if
    the attention were concentrated on that many tokens; compare scorers with each other."""
    values = []
    for record in records:
        scores, target = scores_of(record), record.target
        k = max(1, math.ceil(share * target.shape[-1]))
        top = scores.topk(k, dim=-1).indices
        values.append(float((target.gather(-1, top).sum(-1) / target.sum(-1).clamp_min(1e-12)).mean()))
    return sum(values) / len(values)


@torch.no_grad()
def calibrate_threshold(params: BamParams, records: list[UpdateRecord], keep: float,
                        max_scores: int = 4_000_000, kernel: int = 1) -> float:
    """Set b_c so that a share ``keep`` of the recorded tokens score ≥ 0 (estimated on a fixed random sample
    of at most ``max_scores`` scores) after pooling over ``kernel`` neighbours (``NammPolicy.kernel``; a
    shift of b_c shifts pooled scores by as much); returns the shift applied."""
    def scores_of(record: UpdateRecord) -> torch.Tensor:
        valid = torch.ones(record.features.shape[:-1], dtype=torch.bool)
        return pool_scores(bam_scores(record.features.float(), valid, params), valid, kernel).flatten()

    scores = torch.cat([scores_of(r) for r in records])
    if scores.numel() > max_scores:
        scores = scores[torch.randperm(scores.numel(), generator=torch.Generator().manual_seed(0))[:max_scores]]
    shift = -float(torch.quantile(scores, 1.0 - keep))
    params.b_c += shift
    return shift


def save_records(records: list[UpdateRecord], path: Path) -> None:
    """Write ``records`` to ``path`` atomically (a killed recording leaves no torn file to resume from)."""
    buffer = io.BytesIO()
    torch.save([r.__dict__ for r in records], buffer)
    write_bytes_atomic(path, buffer.getvalue())


def load_records(path: Path) -> list[UpdateRecord]:
    return [UpdateRecord(**r) for r in torch.load(path)]
