"""What every policy costs and saves on the embedded SmolLM2-135M, measured side by side in one run.

For each prompt length, budget (a fraction of the prompt, tokens per KV head) and policy: the KV memory
ratio (bytes held / (kept tokens × bytes per token); 1.0 = no padding), prefill time relative to the full
cache, memory-update time (features, scoring, eviction, compaction) as a fraction of prefill time, and at
one budget the time per decoded token relative to the full cache. The schedule is docs/namm-spec.md §1:
prefill chunks of 128, an update every 512 tokens. Prompts are random token ids (costs do not depend on
content).

    python -m benchmarks.model_costs --lengths 4096 8192 --fractions 0.1 0.25 0.5
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch

from namm_suite.adapters.language import LanguageAdapter
from namm_suite.manager import MemoryConfig
from namm_suite.policies import POLICIES, REFERENCE, PolicySpec
from namm_suite.shipped import SHIPPED_NAMM

UPDATE_EVERY = 512
CHUNK = 128
MiB = 2**20


def variants(names: list[str] | None = None) -> list[PolicySpec]:
    """Every registered policy that holds memory, labelled by name; a self-sizing policy (budget rule
    ``cap``: the NAMM) runs the shipped checkpoint capped at the budget, also under the ragged per-head
    threshold rule (``<name>-threshold``)."""
    out = []
    for name in names or POLICIES.names():
        policy = POLICIES.get(name)
        if not policy.holds_memory:
            continue
        if policy.budget_rule == "cap":
            shipped = {"checkpoint": str(SHIPPED_NAMM)}
            out.append(PolicySpec(name, shipped, name))
            out.append(PolicySpec(name, {**shipped, "selection": "threshold"}, f"{name}-threshold"))
        else:
            out.append(PolicySpec(name, label=name))
    return out


@dataclass
class CostRow:
    length: int
    label: str
    budget: int | None
    prefill_s: float
    update_s: float
    mean_kept: float
    final_kept: float
    final_kv_mib: float
    peak_kv_mib: float
    memory_ratio: float
    decode_ms: float | None = None


def prompt(adapter: LanguageAdapter, length: int) -> torch.Tensor:
    vocab = adapter.model.config.vocab_size
    return torch.randint(100, vocab, (1, length), generator=torch.Generator().manual_seed(length))


@torch.no_grad()
def measure(adapter: LanguageAdapter, ids: torch.Tensor, variant: PolicySpec | None, budget: int | None,
            decode: int = 0) -> CostRow:
    """Prefill ``ids`` under ``variant`` (None: full cache), then time ``decode`` greedy tokens (after one
    untimed step, which runs the update that the schedule left pending at the end of the prompt)."""
    spec = variant or PolicySpec(REFERENCE)
    manager = spec.build_manager(MemoryConfig(update_every=UPDATE_EVERY, budget=budget, chunk_size=CHUNK))
    manager.new_cache()
    start = time.perf_counter()
    logits = manager.forward(adapter.model, ids)
    prefill = time.perf_counter() - start
    stats = manager.stats()
    decode_ms = None
    if decode:
        logits = manager.forward(adapter.model, logits.argmax(-1, keepdim=True))
        start = time.perf_counter()
        for _ in range(decode):
            logits = manager.forward(adapter.model, logits.argmax(-1, keepdim=True))
        decode_ms = (time.perf_counter() - start) / decode * 1000
    return CostRow(ids.shape[1], variant.label if variant else REFERENCE, budget, prefill, stats.update_seconds,
                   stats.mean_kept, stats.final_kept, stats.final_kv_bytes / MiB, stats.peak_kv_bytes / MiB,
                   1.0 + stats.padding_overhead, decode_ms)


def run(model: str, lengths: list[int], fractions: list[float], names: list[str] | None, decode: int,
        decode_fraction: float, with_full: bool = True, log=print) -> list[CostRow]:
    """All rows of the cost table (plus the full cache per length unless ``with_full`` is False); decoding
    is timed for ``full`` and at ``decode_fraction``."""
    adapter = LanguageAdapter.from_pretrained(model)
    rows = []
    for length in lengths:
        ids = prompt(adapter, length)
        if with_full:
            rows.append(measure(adapter, ids, None, None, decode))
            log(rows[-1])
        for fraction in fractions:
            budget = int(length * fraction)
            for variant in variants(names):
                timed = decode if fraction == decode_fraction else 0
                rows.append(measure(adapter, ids, variant, budget, timed))
                log(rows[-1])
    return rows


def markdown(rows: list[CostRow]) -> str:
    """The cost table, ratios to the full cache of the same length beside the raw numbers."""
    full = {r.length: r for r in rows if r.label == REFERENCE}
    header = ("| tokens | policy | budget | kept/head | KV MiB | memory ratio | prefill s | ×full | "
              "update/prefill | decode ms/token | ×full |")
    lines = [header, "|---" * 11 + "|"]
    for r in rows:
        ref = full[r.length]
        decode = f"{r.decode_ms:.1f} | {r.decode_ms / ref.decode_ms:.2f}" if r.decode_ms and ref.decode_ms \
            else "- | -"
        lines.append(f"| {r.length} | {r.label} | {r.budget or '-'} | {r.final_kept:.0f} | {r.final_kv_mib:.1f} | "
                     f"{r.memory_ratio:.3f} | {r.prefill_s:.2f} | {r.prefill_s / ref.prefill_s:.2f} | "
                     f"{r.update_s / r.prefill_s:.1%} | {decode} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[CostRow]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.25, 0.5])
    parser.add_argument("--policies", nargs="+", default=None, help="registered names (default: all)")
    parser.add_argument("--decode", type=int, default=8, help="decoded tokens timed per run")
    args = parser.parse_args(argv)
    rows = run(args.model, args.lengths, args.fractions, args.policies, args.decode, 0.25)
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
