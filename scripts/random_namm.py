"""Write a NAMM checkpoint with random parameters θ ~ N(0, σ²) and the statistics of another checkpoint.

It is the "no evolution" control of results/evolution.md: same features, same μ and v, same schedule,
parameters drawn at the CMA-ES initial step size instead of evolved.

    python scripts/random_namm.py checkpoints/namm_smollm2 checkpoints/namm_random --sigma 0.065 --seed 0
"""

from __future__ import annotations

import argparse

import torch

from namm_suite.policies.namm import NammPolicy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="checkpoint whose statistics (mu, var) are reused")
    parser.add_argument("out", help="output checkpoint path (without suffix)")
    parser.add_argument("--sigma", type=float, default=0.065)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    source = NammPolicy(checkpoint=args.source)
    policy = NammPolicy()
    generator = torch.Generator().manual_seed(args.seed)
    policy.set_vector(torch.randn(policy.vector().numel(), generator=generator) * args.sigma)
    policy.set_stats(source.mu, source.var, source.stats_count)
    policy.hparams = source.hparams
    policy.save(args.out, provenance={"random_parameters": {"sigma": args.sigma, "seed": args.seed},
                                      "statistics_from": args.source})
    print(f"wrote {args.out}.safetensors / .json")


if __name__ == "__main__":
    main()
