"""Where a policy's prefill time goes beside the full policy's: timings and cProfile of both on one prompt.

The schedule of :mod:`benchmarks.hook_speed` (prefill chunks of 128, an update every 512 tokens, the policy
at 25 % of the prompt, random prompt ids). It times the prefill of the full policy and the policy, ``repeats``
times in turn, and prints their per-repeat ratios (wall and CPU time) and medians, then one cProfile run of
each: the functions whose own time grew most (ms, policy − full) and the policy's time inside this project's
code (cumulative ms).

    OMP_NUM_THREADS=1 python -m benchmarks.prefill_profile --policy h2o --length 1024 --repeats 3
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
from pathlib import Path

import torch

from namm_suite.device import add_device_args, resolve_device, resolve_dtype
from namm_suite.policies import REFERENCE

from .hook_speed import BUDGET_FRACTION, load, time_policy

Profile = dict[str, tuple[int, float, float]]  # function -> (calls, own ms, cumulative ms)


def profiled(model, ids: torch.Tensor, name: str, budget: int | None) -> Profile:
    """One prefill of ``ids`` under policy ``name`` in cProfile, per function."""
    profiler = cProfile.Profile()
    profiler.runcall(time_policy, model, ids, 0, name, budget)
    out: Profile = {}
    for (path, line, function), (_, calls, own, cumulative, _) in pstats.Stats(profiler).stats.items():
        where = function if path == "~" else f"{Path(path).parent.name}/{Path(path).name}:{line} {function}"
        out[where] = (calls, 1000 * own, 1000 * cumulative)
    return out


def timed(model, ids: torch.Tensor, name: str, budget: int | None) -> tuple[float, float]:
    """Wall and CPU seconds (this process's, which a shared machine's other jobs do not inflate as much) of
    one prefill of ``ids`` under policy ``name``."""
    start = time.process_time()
    prefill = time_policy(model, ids, 0, name, budget).prefill_s
    return prefill, time.process_time() - start


def report(name: str, length: int, wall: list[float], cpu: list[float], full: Profile, policy: Profile,
           top: int) -> str:
    """Markdown: the per-repeat ratios, the largest own-time differences, the policy's time in project code."""
    def ratios(values: list[float]) -> str:
        return f"{', '.join(f'{r:.2f}' for r in values)} (median {statistics.median(values):.2f})"

    lines = [f"{name} prefill ÷ full prefill, {length} tokens, per repeat: wall {ratios(wall)}; CPU {ratios(cpu)}", "",
             f"| function | calls | own ms, full | own ms, {name} | Δ ms |", "|---|---|---|---|---|"]
    grown = sorted(policy, key=lambda f: policy[f][1] - full.get(f, (0, 0.0, 0.0))[1], reverse=True)
    for function in grown[:top]:
        calls, own, _ = policy[function]
        before = full.get(function, (0, 0.0, 0.0))[1]
        lines.append(f"| `{function}` | {calls} | {before:.0f} | {own:.0f} | {own - before:+.0f} |")
    total_full = max(c for _, _, c in full.values())
    total = max(c for _, _, c in policy.values())
    lines += ["", f"Whole prefill under cProfile: full {total_full:.0f} ms, {name} {total:.0f} ms.", "",
              f"| project function ({name}) | calls | cumulative ms |", "|---|---|---|"]
    ours = sorted((f for f in policy if f.startswith(("suite/", "namm_suite/"))), key=lambda f: -policy[f][2])
    lines += [f"| `{f}` | {policy[f][0]} | {policy[f][2]:.0f} |" for f in ours[:top]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--policy", required=True, help="a budgeted policy (e.g. h2o), run at 25 %% of the prompt")
    parser.add_argument("--length", type=int, default=1024, help="prompt tokens")
    parser.add_argument("--repeats", type=int, default=3, help="timed prefills of each, in turn")
    parser.add_argument("--top", type=int, default=12, help="rows per table")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    add_device_args(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = load(args.model, None, device, resolve_dtype(args.dtype))
    ids = torch.randint(100, model.config.vocab_size, (1, args.length), generator=torch.Generator().manual_seed(0))
    ids = ids.to(device)
    budget = round(BUDGET_FRACTION * args.length)
    time_policy(model, ids, 0, REFERENCE, None)  # warm-up
    wall, cpu = [], []
    for _ in range(args.repeats):
        (full, full_cpu), (own, own_cpu) = (timed(model, ids, name, size) for name, size in
                                            ((REFERENCE, None), (args.policy, budget)))
        wall.append(own / full)
        cpu.append(own_cpu / full_cpu)
    text = report(args.policy, args.length, wall, cpu, profiled(model, ids, REFERENCE, None),
                  profiled(model, ids, args.policy, budget), args.top)
    print(text)
    return text


if __name__ == "__main__":
    main()
