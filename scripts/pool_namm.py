"""Write a NAMM checkpoint that pools its scores over neighbouring tokens (``NammPolicy.kernel``).

θ, μ and v come from another checkpoint; the new one records the pooling width and, with ``--records``,
an output bias b_c shifted so that at its own threshold the pooled scores keep a share ``--keep`` of the
recorded tokens (pooling raises every token to its best neighbour, so the source's threshold would keep
far more). The records are those of ``scripts/distill_namm.py`` (``--one-shot`` keeps only the one-shot
evictions of the ``query-aware`` protocol). How v4 was made (results/evolution.md):

    python scripts/pool_namm.py checkpoints/namm_smollm2_v2 checkpoints/namm_smollm2_v4 --kernel 15 \\
        --records runs/distill_v3/train --one-shot --keep 0.5
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from namm_suite.evolution.distill import calibrate_threshold, load_records
from namm_suite.policies.namm import NammPolicy
from namm_suite.provenance import provenance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="checkpoint whose θ, μ and v are reused")
    parser.add_argument("out", help="output checkpoint path (without suffix)")
    parser.add_argument("--kernel", type=int, required=True, help="odd pooling width (NammPolicy.kernel)")
    parser.add_argument("--records", type=Path, default=None,
                        help="folder of distill_namm.py records to calibrate b_c on (default: keep b_c)")
    parser.add_argument("--one-shot", action="store_true", help="calibrate on the one-shot records only")
    parser.add_argument("--keep", type=float, default=0.5, help="share of recorded tokens kept at b_c")
    args = parser.parse_args()
    policy = NammPolicy(checkpoint=args.source, kernel=args.kernel)
    made = {"pooled_from": args.source, "kernel": args.kernel}
    if args.records is not None:
        files = sorted(args.records.glob("*.pt"))
        if not files:
            raise SystemExit(f"{args.records}: no records (*.pt of scripts/distill_namm.py) found")
        records = [r for path in files for r in load_records(path) if r.one_shot or not args.one_shot]
        if not records:
            raise SystemExit(f"{args.records}: no one-shot records; record them with distill_namm.py --one-shot")
        with torch.no_grad():
            shift = calibrate_threshold(policy.params, records, args.keep, kernel=args.kernel)
        made.update(calibrated_on=str(args.records), one_shot=args.one_shot, keep=args.keep,
                    lists=len(records), b_c_shift=shift)
        print(f"b_c shifted by {shift:+.4f} on {len(records)} lists: {args.keep:.0%} of their tokens kept")
    policy.save(args.out, provenance={**provenance(), "made": made, "source_provenance": policy.provenance})
    print(f"wrote {args.out}.safetensors / .json")


if __name__ == "__main__":
    main()
