"""Memory and speed of every policy on the embedded SmolLM2-135M, measured side by side in one run.

For each prompt length and policy (25% budget; `full` keeps everything; the NAMM runs with theta = 0 and the
budget as its cap, so it evicts like the others and its update cost is measured): prefill time, time per
decoded token, peak and final KV bytes, and memory-update time as a fraction of prefill time. Ratios to
`full` are printed beside the raw numbers because the machine is noisy; the table goes to stdout and, with
``--out``, to a markdown file.

    python benchmarks/bench_memory.py --lengths 2048 4096 --decode 16 --out results/bench_memory.md
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from namm_suite.adapters.language import LanguageAdapter
from namm_suite.manager import MemoryConfig, MemoryManager
from namm_suite.policies import POLICIES, create_policy

MiB = 2**20


def measure(adapter: LanguageAdapter, ids: torch.Tensor, name: str, budget: int | None, update_every: int,
            decode: int) -> dict[str, float]:
    policy = create_policy(name)
    manager = MemoryManager(policy, MemoryConfig(update_every=update_every, budget=budget))
    manager.new_cache()
    with torch.no_grad():
        start = time.perf_counter()
        logits = manager.forward(adapter.model, ids)
        prefill = time.perf_counter() - start
        prefill_update = manager.stats().update_seconds
        start = time.perf_counter()
        for _ in range(decode):
            token = logits.argmax(-1, keepdim=True)
            logits = manager.forward(adapter.model, token)
        per_token = (time.perf_counter() - start) / decode
    stats = manager.stats()
    return {
        "prefill_s": prefill,
        "decode_ms": per_token * 1000,
        "peak_mib": stats.peak_kv_bytes / MiB,
        "final_mib": stats.final_kv_bytes / MiB,
        "final_kept": stats.final_kept,
        "padding": stats.padding_overhead,
        "update_frac": prefill_update / prefill,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--budget-fraction", type=float, default=0.25)
    parser.add_argument("--update-every", type=int, default=256)
    parser.add_argument("--decode", type=int, default=16)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    adapter = LanguageAdapter.from_pretrained(args.model)
    vocab = adapter.model.config.vocab_size
    header = ("| prompt | policy | budget | prefill s | ×full | decode ms/token | ×full | peak KV MiB | "
              "final KV MiB | ×full | kept/head | padding | update/prefill |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for length in args.lengths:
        ids = torch.randint(100, vocab, (1, length), generator=torch.Generator().manual_seed(length))
        budget = int(length * args.budget_fraction)
        names = ["full"] + [n for n in POLICIES.names() if n != "full"]
        reference = None
        for name in names:
            row = measure(adapter, ids, name, None if name == "full" else budget, args.update_every, args.decode)
            reference = reference or row
            lines.append(
                f"| {length} | {name} | {'-' if name == 'full' else budget} | {row['prefill_s']:.2f} | "
                f"{row['prefill_s'] / reference['prefill_s']:.2f} | {row['decode_ms']:.1f} | "
                f"{row['decode_ms'] / reference['decode_ms']:.2f} | {row['peak_mib']:.1f} | "
                f"{row['final_mib']:.1f} | {row['final_mib'] / reference['final_mib']:.2f} | "
                f"{row['final_kept']:.0f} | {row['padding']:.1%} | {row['update_frac']:.1%} |"
            )
            print(lines[-1], flush=True)
    note = (f"\n{args.model}, fp32, CPU ({platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} threads), torch {torch.__version__}; memory update every "
            f"{args.update_every} tokens, prefill chunks of {args.update_every}, {args.decode} decoded tokens, "
            f"budget {args.budget_fraction:.0%} of the prompt. NAMM: theta = 0 with the budget as cap.\n")
    table = "\n".join(lines) + "\n" + note
    print(note)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table, encoding="utf-8")


if __name__ == "__main__":
    main()
