"""Shared prefixes: CPU seconds of a one-shot sweep with each episode's compressed part read once for all
cells against each cell reading its own prompt, side by side in one process, on the same episodes.

Both runs are ordinary ``run_sweep`` calls (``share_prefix`` True / False) into throw-away files; the
benchmark also checks that they wrote the same answers. CPU seconds are this process's
(``time.process_time``), so a busy machine slows the wall clock, not the measure.

    OMP_NUM_THREADS=1 python -m benchmarks.shared_prefix                  # about 4 minutes
    python -m benchmarks.shared_prefix --length 256 --episodes 1 --out ''  # smoke run, not written
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from namm_suite.adapters.base import create_adapter
from namm_suite.atomic import write_bytes_atomic
from namm_suite.policies import POLICIES, REFERENCE
from namm_suite.provenance import provenance
from namm_suite.results import read_rows
from namm_suite.runner import SweepConfig, run_sweep


def attention_readers() -> list[str]:
    """The registered policies that read attention (the cells whose prompt reads record attention rows)."""
    return [name for name in POLICIES.names() if POLICIES.get(name).needs_attention]


def measure(adapter, config: SweepConfig, folder: Path) -> tuple[float, list[dict]]:
    """CPU seconds of one sweep and its rows."""
    out = folder / f"share-{config.share_prefix}.jsonl"
    start = time.process_time()
    run_sweep(config, out, adapter=adapter)
    return time.process_time() - start, read_rows(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--episodes", type=int, default=2, help="passkey episodes")
    parser.add_argument("--out", default="results/shared_prefix.md", help="'' to only print")
    args = parser.parse_args()
    adapter = create_adapter("language", "smollm2-135m")
    readers = attention_readers()
    config = {"tasks": ["passkey"], "policies": [REFERENCE, *readers], "cache_sizes": ["25%", "50%"],
              "length": args.length, "limit": args.episodes, "protocol": "query-aware", "evict": "once"}
    with tempfile.TemporaryDirectory() as folder:
        shared, rows = measure(adapter, SweepConfig(**config, share_prefix=True), Path(folder))
        alone, alone_rows = measure(adapter, SweepConfig(**config, share_prefix=False), Path(folder))
    same = [r["prediction"] for r in rows] == [r["prediction"] for r in alone_rows]
    cells = len(rows) // args.episodes
    lines = [
        "# Shared prefixes: one read of the compressed part for every cell", "",
        (f"`python -m benchmarks.shared_prefix --length {args.length} --episodes {args.episodes}`: passkey, "
         f"SmolLM2-135M fp32, query-aware one-shot compression, {cells} cells per episode ({REFERENCE}, and "
         f"{', '.join(readers)} at 25% and 50%; the NAMM at its own size, the shipped checkpoint), CPU seconds "
         f"of this process, one run (commit {provenance()['git_commit'][:12]})."), "",
        "| path | CPU s | per episode | × shared |", "|---|---|---|---|",
        f"| each cell reads its prompt | {alone:.1f} | {alone / args.episodes:.1f} | {alone / shared:.2f} |",
        f"| one shared read per episode | {shared:.1f} | {shared / args.episodes:.1f} | 1.00 |", "",
        f"Same answers in every cell: {'yes' if same else 'NO'}.", "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        write_bytes_atomic(Path(args.out), text.encode())
    if not same:
        raise SystemExit("the shared and unshared sweeps wrote different answers")


if __name__ == "__main__":
    main()
