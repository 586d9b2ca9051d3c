"""``make bench`` / ``python -m benchmarks``: every benchmark in one run, written to results/benchmarks.md.

Sections: the NAMM's incremental features + scoring against a naive full-history re-implementation;
KV memory, update overhead and decode speed of every policy at 10–50% budgets (4k and 8k tokens);
prefill peak memory of the attention paths; and how full cache and NAMM costs grow with context
(log-log figure ``results/scaling.png``). Every ratio is measured side by side in the same run, and each
target from the performance issue is printed beside the measured value.

    python -m benchmarks                      # the full run (about an hour on 2 CPU cores)
    OMP_NUM_THREADS=1 python -m benchmarks    # on a shared machine: no thread oversubscription
    python -m benchmarks --quick              # small sizes, minutes; not written to results/ by default
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import asdict
from pathlib import Path

import torch

from namm_suite.atomic import write_bytes_atomic
from namm_suite.policies import LEARNED, is_learned, is_reference
from namm_suite.provenance import provenance

from . import model_costs, namm_throughput, prefill_memory, scaling


def targets(costs: list[model_costs.CostRow], longest: int) -> list[str]:
    """The target table: each goal of the performance issue beside what this run measured."""
    at = [r for r in costs if r.length == longest]
    full = next(r for r in at if is_reference(r.label))
    worst_ratio = max(costs, key=lambda r: r.memory_ratio)
    lines = ["| target | goal | measured | met |", "|---|---|---|---|"]

    def add(name: str, goal: str, value: float, ok: bool, text: str) -> None:
        lines.append(f"| {name} | {goal} | {text.format(value)} | {'yes' if ok else '**no**'} |")

    add("KV bytes / (kept × bytes per token), worst policy and budget", "≤ 1.15", worst_ratio.memory_ratio,
        worst_ratio.memory_ratio <= 1.15, f"{{:.3f}} ({worst_ratio.label}, {worst_ratio.length}, "
                                          f"budget {worst_ratio.budget})")
    for r in (r for r in at if r.decode_ms and not is_reference(r.label)):
        ratio = r.decode_ms / full.decode_ms
        add(f"decode time per token at 25% cache ÷ full, {longest} tokens: {r.label}", "≤ 0.5", ratio,
            ratio <= 0.5, "{:.2f}")
    labels = dict.fromkeys(r.label for r in at if not is_reference(r.label))
    for label in sorted(labels, key=lambda label: not is_learned(label)):  # learned policies first
        goal = 0.10 if is_learned(label) else 0.03
        worst = max(r.update_s / r.prefill_s for r in at if r.label == label)
        add(f"memory-update time ÷ prefill time, {longest} tokens: {label} (worst budget)", f"≤ {goal:.0%}",
                worst, worst <= goal, "{:.1%}")
    return lines


def report(throughput: str, costs: list[model_costs.CostRow], prefill: str, scale: str, meta: dict) -> str:
    longest = max(r.length for r in costs)
    return "\n".join([
        "# Benchmarks", "",
        (f"Measured with `python -m benchmarks {meta['argv']}` on {meta['machine']}; commit "
        f"`{meta['provenance']['git_commit']}`, torch {meta['provenance']['versions'].get('torch')}. "
        "All ratios come from runs side by side in this one process (the machine is shared and noisy; "
        "absolute seconds are not comparable across runs)."), "",
        "## Targets", "", *targets(costs, longest), "",
        "## NAMM features + scoring: incremental vs naive full-history recomputation", "", throughput, "",
        "## KV memory, update overhead and decode speed per policy", "",
        ("Prefill chunks of 128, an update every 512 tokens (docs/namm-spec.md §1); the NAMM is the shipped "
        "checkpoint capped at the budget (`namm`: per-layer κ, rectangular; `namm-threshold`: ragged per-head rule). "
        "`kept/head` is the mean held per head at the end of the prompt (the last update runs at the next "
        "pass, so up to 512 new tokens sit on top of the budget). Decoding is timed at 25% only."), "",
        model_costs.markdown(costs), "",
        "## Prefill peak memory by attention path", "", prefill, "",
        "## Scaling with context", "", scale, "", "![scaling](scaling.png)", "",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--out", type=Path, default=None, help="default: results/benchmarks.md unless --quick")
    args = parser.parse_args(argv)
    lengths = [1024] if args.quick else [4096, 8192]
    scale_lengths = [512, 1024] if args.quick else [1024, 2048, 4096, 8192, 16384]
    out = args.out or (None if args.quick else Path("results/benchmarks.md"))
    meta = {"argv": " ".join(argv or []) or "(defaults)", "provenance": provenance(),  # the code measured
            "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} threads"}

    throughput = namm_throughput.markdown(
        [namm_throughput.measure(t, 3, 512) for t in ([1024] if args.quick else [2048, 4096, 8192])], 3, 512)
    print(throughput, flush=True)
    decode = 4 if args.quick else 8
    if args.quick:
        costs = model_costs.run(args.model, lengths, [0.25], None, decode, 0.25)
    else:  # every policy at 10/25/50% at 4k; at 8k every policy at 25% and the NAMM also at 10% and 50%
        costs = (model_costs.run(args.model, [4096], [0.1, 0.25, 0.5], None, decode, 0.25)
                 + model_costs.run(args.model, [8192], [0.25], None, decode, 0.25)
                 + model_costs.run(args.model, [8192], [0.1, 0.5], list(LEARNED), decode, 0.25, with_full=False))
    print(model_costs.markdown(costs), flush=True)
    prefill_rows = prefill_memory.run(args.model, lengths[-1], [128, 512] if args.quick else [64, 128, 256, 512])
    prefill = prefill_memory.markdown(prefill_rows, lengths[-1])
    print(prefill, flush=True)
    scale_rows = scaling.run(args.model, scale_lengths, costs)
    scale = scaling.markdown(scale_rows)
    print(scale, flush=True)
    if out:
        text = report(throughput, costs, prefill, scale, meta)
        write_bytes_atomic(out, text.encode())
        scaling.plot(scale_rows, out.parent / "scaling.png", args.model, torch.get_num_threads())
        raw = {"costs": [asdict(r) for r in costs], "prefill": [asdict(r) for r in prefill_rows],
               "scaling": [asdict(r) for r in scale_rows], **meta}
        write_bytes_atomic(out.with_suffix(".json"), json.dumps(raw, indent=1).encode())
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
