"""Prefill peak memory and time: SDPA on the whole prompt, eager on the whole prompt, and the suite's
chunked eager attention (the path every attention-reading policy uses) at several chunk sizes.

Each mode runs in a fresh subprocess; after the model is loaded the kernel's peak-RSS mark (``VmHWM``) is
reset (``/proc/self/clear_refs``), so the number reported is the peak during prefill minus the resident
memory right before it (Linux).

    python -m benchmarks.prefill_memory --length 4096 --chunks 64 128 256 512
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass

MiB = 2**20


@dataclass
class PrefillRow:
    mode: str
    chunk: int | None
    peak_mib: float
    seconds: float


def _status_mib(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {field} (this benchmark needs Linux)")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
        refs.write("5")


def _child(model: str, length: int, mode: str, chunk: int) -> dict:
    """Runs inside the subprocess: load, note memory, prefill once, report peak growth and time."""
    import torch

    from namm_suite.adapters.models import load_causal_lm
    from namm_suite.attention import ATTN_IMPLEMENTATION
    from namm_suite.manager import MemoryConfig, MemoryManager
    from namm_suite.policies.namm import NammPolicy

    implementation = {"sdpa": "sdpa", "eager": "eager"}.get(mode, ATTN_IMPLEMENTATION)
    lm, _ = load_causal_lm(model, attn_implementation=implementation)
    ids = torch.randint(100, lm.config.vocab_size, (1, length), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # touch every weight page (safetensors are memory-mapped) before measuring
        lm(input_ids=ids[:, :16])
    base = _status_mib("VmRSS")
    _reset_peak()
    start = time.perf_counter()
    with torch.no_grad():
        if mode == "chunked":
            # θ = 0 NAMM: full cache, but eager attention rows recorded for the policy like any NAMM run
            manager = MemoryManager(NammPolicy(), MemoryConfig(update_every=max(chunk, 512), chunk_size=chunk))
            manager.forward(lm, ids)
        else:
            lm(input_ids=ids, logits_to_keep=1)
    return {"peak_mib": _status_mib("VmHWM") - base, "seconds": time.perf_counter() - start}


def measure(model: str, length: int, mode: str, chunk: int | None = None) -> PrefillRow:
    code = (f"import json, benchmarks.prefill_memory as m; "
            f"print(json.dumps(m._child({model!r}, {length}, {mode!r}, {chunk or 0})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return PrefillRow(mode, chunk, result["peak_mib"], result["seconds"])


def run(model: str, length: int, chunks: list[int], log=print) -> list[PrefillRow]:
    rows = [measure(model, length, "sdpa"), measure(model, length, "eager")]
    for row in rows:
        log(row)
    for chunk in chunks:
        rows.append(measure(model, length, "chunked", chunk))
        log(rows[-1])
    return rows


def balanced_chunk(rows: list[PrefillRow]) -> int | None:
    """The chunk size with the smallest peak-memory × time product among the chunked rows."""
    chunked = [r for r in rows if r.mode == "chunked"]
    return min(chunked, key=lambda r: max(r.peak_mib, 1.0) * r.seconds).chunk if chunked else None


def markdown(rows: list[PrefillRow], length: int) -> str:
    sdpa = next(r for r in rows if r.mode == "sdpa")
    lines = [f"| prefill of {length} tokens | chunk | peak extra MiB | ×SDPA | seconds | ×SDPA |",
             "|---|---|---|---|---|---|"]
    names = {"sdpa": "SDPA, whole prompt", "eager": "eager, whole prompt", "chunked": "namm hook, chunked eager"}
    for r in rows:
        lines.append(f"| {names[r.mode]} | {r.chunk or '-'} | {r.peak_mib:.0f} | {r.peak_mib / sdpa.peak_mib:.2f} | "
                     f"{r.seconds:.1f} | {r.seconds / sdpa.seconds:.2f} |")
    best = balanced_chunk(rows)
    if best:
        lines.append(f"\nBalanced chunk (smallest peak memory × time): {best}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[PrefillRow]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--chunks", type=int, nargs="+", default=[64, 128, 256, 512])
    args = parser.parse_args(argv)
    rows = run(args.model, args.length, args.chunks)
    print(markdown(rows, args.length))
    return rows


if __name__ == "__main__":
    main()
