"""NAMM feature extraction + scoring throughput: the suite's incremental update against a straightforward
re-implementation that recomputes the whole spectrogram from the full attention history at every update.

Both run on identical inputs (causal softmax attention of ``T`` queries over ``T`` keys, one layer with
``H`` KV heads, an update every ``U`` queries, no eviction so both see the same cache) and must give the
same token scores; the table reports tokens/s per layer and the speed-up.

    python -m benchmarks.namm_throughput --tokens 2048 4096 8192
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import torch

from namm_suite.namm.features import CONTEXT, GAMMA, HOP, N_BINS, N_FFT, build_features, update_ema
from namm_suite.namm.scorer import backward_mask, bam_scores
from namm_suite.policies.namm import NammPolicy
from namm_suite.shipped import SHIPPED_NAMM


@dataclass
class ThroughputRow:
    tokens: int
    incremental_tok_s: float
    naive_tok_s: float
    max_abs_score_diff: float
    score_scale: float

    @property
    def speedup(self) -> float:
        return self.incremental_tok_s / self.naive_tok_s


def causal_attention(tokens: int, heads: int, seed: int) -> torch.Tensor:
    """Float32 ``[1, H, T, T]`` softmax rows; query t attends to keys ≤ t (a stand-in for a model's)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, heads, tokens, tokens, generator=g)
    causal = torch.ones(tokens, tokens, dtype=torch.bool).tril()
    return torch.softmax(logits.masked_fill(~causal, float("-inf")), dim=-1)


def naive_ema(history: torch.Tensor, gamma: float = GAMMA) -> torch.Tensor:
    """EMA of the magnitude spectrogram recomputed from scratch: ``history [..., t, N]`` (all queries so
    far, zero where key j did not exist yet) -> ``[..., N, 17]``.

    Each key's signal is its whole attention column behind 16 zeros; frames that end before the key's own
    16-query block are skipped (docs/namm-spec.md §3.3), the rest are averaged with weight
    (1 − a)·a^(F−1−f).
    """
    n_keys = history.shape[-1]
    signal = torch.cat([history.new_zeros(*history.shape[:-2], n_keys, CONTEXT), history.transpose(-1, -2)], -1)
    flat = signal.reshape(-1, signal.shape[-1])
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float32)
    spec = torch.stft(flat, N_FFT, HOP, window=window, center=False, onesided=True, return_complex=True).abs()
    spec = spec.reshape(*signal.shape[:-1], N_BINS, -1)  # [..., N, 17, F]
    frames = spec.shape[-1]
    a = gamma**HOP
    f = torch.arange(frames, dtype=torch.float64)
    first = torch.div(torch.arange(n_keys), HOP, rounding_mode="floor")  # key j's first frame
    weights = (1 - a) * a ** (frames - 1 - f)[None, :] * (f[None, :] >= first[:, None])
    return (spec * weights.to(torch.float32)[:, None, :]).sum(-1)


def naive_scores(ema: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor, policy) -> torch.Tensor:
    """BAM scores with the backward-masked softmax written out in full (materialised ``N × N`` logits)."""
    p = policy.params
    x = build_features(ema, positions, valid, policy.mu, policy.var)
    q, k, v = (x @ p.W_a + p.b_a).split(32, dim=-1)
    logits = (q @ k.transpose(-1, -2)) / math.sqrt(32)
    logits = logits.masked_fill(~backward_mask(valid), torch.finfo(torch.float32).min)
    r, m = ((torch.softmax(logits, -1) @ v) @ p.W_b + p.b_b).split(25, dim=-1)
    return (x * (1 + m) + r) @ p.w_c + p.b_c


def measure(tokens: int, heads: int, update_every: int, seed: int = 0) -> ThroughputRow:
    """Run both implementations over one synthetic sequence; time only feature + scoring work."""
    policy = NammPolicy(checkpoint=str(SHIPPED_NAMM))
    attn = causal_attention(tokens, heads, seed)
    ema = torch.zeros(1, heads, 0, N_BINS)
    context = torch.zeros(1, heads, 0, CONTEXT)
    incremental = naive = 0.0
    worst = scale = 0.0
    for end in range(update_every, tokens + 1, update_every):
        rows = attn[:, :, end - update_every:end, :end]
        positions = torch.arange(end).expand(1, heads, end)
        valid = torch.ones(1, heads, end, dtype=torch.bool)
        pad = (0, 0, 0, update_every)
        start = time.perf_counter()
        ema, context = update_ema(rows, torch.nn.functional.pad(ema, pad), torch.nn.functional.pad(context, pad),
                                  update_every)
        fast = bam_scores(build_features(ema, positions, valid, policy.mu, policy.var), valid, policy.params)
        incremental += time.perf_counter() - start
        start = time.perf_counter()
        slow = naive_scores(naive_ema(attn[:, :, :end, :end]), positions, valid, policy)
        naive += time.perf_counter() - start
        worst = max(worst, float((fast - slow).abs().max()))
        scale = max(scale, float(slow.abs().max()))
    return ThroughputRow(tokens, tokens / incremental, tokens / naive, worst, scale)


def markdown(rows: list[ThroughputRow], heads: int, update_every: int) -> str:
    lines = ["| tokens | incremental tok/s/layer | naive tok/s/layer | speed-up | max |Δscore| (scale) |",
             "|---|---|---|---|---|"]
    lines += [f"| {r.tokens} | {r.incremental_tok_s:,.0f} | {r.naive_tok_s:,.0f} | {r.speedup:.1f}× | "
              f"{r.max_abs_score_diff:.1e} ({r.score_scale:.1f}) |" for r in rows]
    lines.append(f"\nOne layer, {heads} KV heads, an update every {update_every} queries, shipped NAMM, no eviction; "
                 "naive = full-history `torch.stft` + EMA from scratch + materialised masked softmax.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[2048, 4096, 8192])
    parser.add_argument("--heads", type=int, default=3)
    parser.add_argument("--update-every", type=int, default=512)
    args = parser.parse_args(argv)
    rows = [measure(t, args.heads, args.update_every) for t in args.tokens]
    table = markdown(rows, args.heads, args.update_every)
    print(table, flush=True)
    return table


if __name__ == "__main__":
    main()
