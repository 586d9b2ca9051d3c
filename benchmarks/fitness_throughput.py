"""Evolution fitness throughput: evaluated episodes per CPU-second of today's fitness path against the new
ones, side by side in one process, on the same prompts and population members.

Paths (every one through :class:`~namm_suite.evolution.fitness.FitnessEvaluator`, as the evolution runs it):

- ``metric fp32``: the task metric of the greedy answer (the spec's fitness, sampled decoding), fp32;
- ``likelihood fp32``: the teacher-forced answer likelihood (one pass, no decoding), fp32;
- ``likelihood bf16``: the same with the model in bfloat16;
- ``likelihood bf16 batched``: the members evaluated together, one batch row (and one θ) per member, the
  prompt before the first eviction computed once for all of them (``MemoryManager(rows=R)``);
- ``likelihood bf16 batched, query-aware once``: as the last, under the protocol of the held-out comparison
  (one eviction after the question, NAMM capped at 25%): the whole prompt is read once for all members and
  its NAMM features computed once (``PolicyView.shared_rows``); each member pays its scores, its eviction
  and the answer's pass.

Members are the shipped NAMM's θ plus CMA-ES-sized noise (σ = 0.065), with its μ, v. CPU seconds are this
process's (``time.process_time``), so a busy machine slows the wall clock, not the measure; run with
``OMP_NUM_THREADS=1`` for one core per process.

    OMP_NUM_THREADS=1 python -m benchmarks.fitness_throughput            # about 5 minutes
    python -m benchmarks.fitness_throughput --per-task 2 --members 2 --out ''   # smoke run, not written
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from namm_suite.atomic import write_bytes_atomic
from namm_suite.evolution import EvolutionConfig, FitnessEvaluator, Stage
from namm_suite.policies.namm import NammPolicy
from namm_suite.provenance import provenance
from namm_suite.shipped import SHIPPED_NAMM

TASKS = ("passkey", "prose_qa")
SCHEDULED = {}
ONE_SHOT = {"protocol": "query-aware", "evict": "once", "budget_fraction": 0.25}
PATHS = (  # label, fitness, dtype, batch_members (None: all members in one batch), protocol
    ("metric fp32 (today)", "metric", "fp32", 1, SCHEDULED),
    ("likelihood fp32", "likelihood", "fp32", 1, SCHEDULED),
    ("likelihood bf16", "likelihood", "bf16", 1, SCHEDULED),
    ("likelihood bf16 batched", "likelihood", "bf16", None, SCHEDULED),
    ("likelihood bf16 batched, query-aware once", "likelihood", "bf16", None, ONE_SHOT),
)


@dataclass
class PathRow:
    label: str
    episodes: int
    cpu_seconds: float
    wall_seconds: float
    mean_score: float

    @property
    def per_cpu_second(self) -> float:
        return self.episodes / self.cpu_seconds


def _config(model: str, length: int, update_every: int, fitness: str, dtype: str, batch: int,
            protocol: dict) -> EvolutionConfig:
    return EvolutionConfig(stages=[Stage("bench", list(TASKS), 1)], model=model, length=length,
                           update_every=update_every, fitness=fitness, dtype=dtype, device="cpu",
                           batch_members=batch, **protocol)


def members(count: int, seed: int = 0) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """``count`` θ around the shipped NAMM (σ = 0.065) and its μ, v."""
    shipped = NammPolicy(checkpoint=str(SHIPPED_NAMM))
    noise = np.random.default_rng(seed).normal(0.0, 0.065, (count, shipped.vector().numel()))
    return shipped.vector().numpy()[None] + noise, shipped.mu, shipped.var


def measure(model: str, per_task: int, count: int, length: int, update_every: int) -> list[PathRow]:
    """Every path of :data:`PATHS` on the same ``per_task`` train prompts of each task and ``count`` members."""
    thetas, mu, var = members(count)
    rows, adapters, episodes = [], {}, None
    for label, fitness, dtype, batch, protocol in PATHS:
        config = _config(model, length, update_every, fitness, dtype, batch or count, protocol)
        if dtype not in adapters:  # one model load per dtype, outside the timing
            adapters[dtype] = FitnessEvaluator(config).adapter
        evaluator = FitnessEvaluator(config, adapter=adapters[dtype])
        if episodes is None:
            episodes = [e for task in TASKS for e in evaluator.pool(task, size=per_task)]
        evaluator.members(thetas[:1], mu, var, episodes[:1])  # warm-up (kernels, first-call allocations)
        cpu, wall = time.process_time(), time.perf_counter()
        results = evaluator.members(thetas, mu, var, episodes)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        scores = [r.score for member in results for r in member]
        rows.append(PathRow(label, len(scores), cpu, wall, float(np.mean(scores))))
        print(f"{label}: {len(scores)} episodes, {cpu:.1f} CPU s, {wall:.1f} s wall", flush=True)
    return rows


def markdown(rows: list[PathRow]) -> str:
    base = rows[0].per_cpu_second
    lines = ["| path | episodes | CPU s | wall s | episodes / CPU s | × today | mean score |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.label} | {r.episodes} | {r.cpu_seconds:.1f} | {r.wall_seconds:.1f} | {r.per_cpu_second:.3f} "
              f"| {r.per_cpu_second / base:.2f} | {r.mean_score:.3f} |" for r in rows]
    return "\n".join(lines)


def report(rows: list[PathRow], args: argparse.Namespace) -> str:
    meta = provenance()
    best = max(rows[1:], key=lambda r: r.per_cpu_second)
    gain = best.per_cpu_second / rows[0].per_cpu_second
    return "\n".join([
        "# Evolution fitness throughput", "",
        (f"Measured with `python -m benchmarks.fitness_throughput --per-task {args.per_task} --members "
         f"{args.members} --length {args.length} --update-every {args.update_every}` on {platform.machine()} "
         f"CPU, {torch.get_num_threads()} thread(s); commit `{meta['git_commit']}`, torch "
         f"{meta['versions'].get('torch')}, model `{args.model}`. Every path evaluates the same "
         f"{args.per_task} train prompts of each of {', '.join(TASKS)} ({args.length} tokens, an update every "
         f"{args.update_every}) under the same {args.members} members (the shipped NAMM plus σ = 0.065 noise), "
         "in this one process; episodes per CPU-second use this process's CPU time. The scores are not "
         "comparable across fitness kinds (task metric vs answer likelihood) or protocols (the last path "
         "evicts once, after the question, at a 25% cap; the others every update, uncapped)."), "",
        markdown(rows), "",
        (f"Best new path: **{best.label}, {gain:.2f}×** today's episodes per CPU-second (the issue's target is "
         f"≥ 3×: {'met' if gain >= 3 else '**not met**'} on this CPU)."), "",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fitness_throughput",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--per-task", type=int, default=4, help="train prompts per task")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--update-every", type=int, default=64)
    parser.add_argument("--out", default="results/fitness_throughput.md", help="'' to write nothing")
    args = parser.parse_args(argv)
    rows = measure(args.model, args.per_task, args.members, args.length, args.update_every)
    print(markdown(rows), flush=True)
    if args.out:
        write_bytes_atomic(Path(args.out), report(rows, args).encode())
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
