"""How prefill time and KV memory grow with context: full cache against the NAMM capped at 25%.

Reuses rows already measured by :mod:`benchmarks.model_costs` at the same length; plots both curves on
log-log axes so that the slopes (≈1 linear, ≈2 quadratic) can be read off.

    python -m benchmarks.scaling --lengths 1024 2048 4096 8192 16384
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from namm_suite.adapters.language import LanguageAdapter
from namm_suite.atomic import save_figure_atomic
from namm_suite.policies import NAMM, REFERENCE

from . import model_costs

FRACTION = 0.25


@dataclass
class ScaleRow:
    length: int
    label: str
    prefill_s: float
    kv_mib: float


def run(model: str, lengths: list[int], known: list[model_costs.CostRow] | None = None,
        log=print) -> list[ScaleRow]:
    """Full cache and NAMM (25% cap) at every length, measuring only what ``known`` lacks."""
    have = {(r.length, r.label): r for r in known or [] if r.label == REFERENCE or
            (r.label == NAMM and r.budget == int(r.length * FRACTION))}
    adapter = None
    rows = []
    namm = next(v for v in model_costs.variants([NAMM]) if v.label == NAMM)
    for length in lengths:
        for label, variant in ((REFERENCE, None), (NAMM, namm)):
            row = have.get((length, label))
            if row is None:
                if adapter is None:
                    adapter = LanguageAdapter.from_pretrained(model)
                budget = int(length * FRACTION) if variant else None
                row = model_costs.measure(adapter, model_costs.prompt(adapter, length), variant, budget)
                log(row)
            rows.append(ScaleRow(length, label, row.prefill_s, row.final_kv_mib))
    return rows


def slope(rows: list[ScaleRow], label: str, field: str) -> float:
    """Least-squares slope of log(field) against log(length): the empirical growth exponent."""
    pts = [(math.log(r.length), math.log(getattr(r, field))) for r in rows if r.label == label]
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def markdown(rows: list[ScaleRow]) -> str:
    by = {(r.length, r.label): r for r in rows}
    lengths = sorted({r.length for r in rows})
    lines = ["| tokens | full prefill s | NAMM prefill s | NAMM ÷ full | full KV MiB | NAMM KV MiB |",
             "|---|---|---|---|---|---|"]
    for n in lengths:
        f, m = by[(n, REFERENCE)], by[(n, NAMM)]
        lines.append(f"| {n} | {f.prefill_s:.1f} | {m.prefill_s:.1f} | {m.prefill_s / f.prefill_s:.2f} | "
                     f"{f.kv_mib:.0f} | {m.kv_mib:.0f} |")
    if len(lengths) > 1:
        lines.append(f"\nGrowth exponents (log-log slope): prefill time full "
                     f"{slope(rows, REFERENCE, 'prefill_s'):.2f}, NAMM {slope(rows, NAMM, 'prefill_s'):.2f}; "
                     f"KV memory full {slope(rows, REFERENCE, 'kv_mib'):.2f}, NAMM {slope(rows, NAMM, 'kv_mib'):.2f}. "
                     f"NAMM capped at {FRACTION:.0%} of the prompt.")
    return "\n".join(lines)


def plot(rows: list[ScaleRow], path: Path, model: str, threads: int) -> None:
    """Prefill seconds and KV MiB against context tokens (log-log), full cache and NAMM, titled with the
    ``model`` and the CPU ``threads`` it was measured with."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    panels = ((axes[0], "prefill_s", "prefill time", "prefill seconds"),
              (axes[1], "kv_mib", "final KV cache size", "KV cache MiB"))
    for ax, field, title, ylabel in panels:
        for label, style, name in ((REFERENCE, "o-", "full cache"), (NAMM, "s-", f"NAMM (cap {FRACTION:.0%})")):
            pts = sorted((r.length, getattr(r, field)) for r in rows if r.label == label)
            ax.plot(*zip(*pts), style, label=name)
        ax.set(xscale="log", yscale="log", xlabel="context tokens", ylabel=ylabel, title=title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"Scaling with context: {model}, {threads} CPU thread{'s' * (threads != 1)}")
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=120)


def main(argv: list[str] | None = None) -> list[ScaleRow]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = run(args.model, args.lengths)
    print(markdown(rows))
    if args.plot:
        plot(rows, args.plot, args.model, torch.get_num_threads())
    return rows


if __name__ == "__main__":
    main()
