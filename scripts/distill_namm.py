"""Fit a NAMM's scorer to future attention on training episodes: the warm start of the evolution.

    python scripts/distill_namm.py --out runs/distill --episodes 10 --heldout 5 --length 1024 \
        --steps 12000 --keep 0.5 --checkpoint checkpoints/namm_smollm2_v2

Records (resumable: one file per episode under ``--out``), fits θ (suite/evolution/distill.py), reports the
ranking quality on held-out episodes beside simple scorers, calibrates the threshold and writes a NAMM
checkpoint with the whole recipe in its provenance. Training episodes come from the train split and seeds
(``--seed``, default 1000); the held-out report uses seed 0 and the held-out prose documents.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import torch

from namm_suite.adapters.base import create_adapter
from namm_suite.evolution.distill import (
    FitConfig,
    calibrate_threshold,
    fit_scorer,
    load_records,
    ranking_quality,
    record_episode,
    save_records,
)
from namm_suite.manager import MemoryConfig, MemoryManager
from namm_suite.namm.features import GAMMA
from namm_suite.policies.namm import NammPolicy, full_cache_statistics
from namm_suite.provenance import provenance
from namm_suite.tasks import TASKS, TaskContext

logger = logging.getLogger("distill_namm")
TRAIN_TASKS = {"passkey": {}, "prose_qa": {"split": "train"}, "prose_qa_multi": {"split": "train"},
               "multikey_needle": {}, "kv_retrieval": {}, "variable_tracking": {}}
HELDOUT_TASKS = {"passkey": {}, "prose_qa": {"split": "heldout"}}


def episodes(adapter, tasks: dict, length: int, seed: int, per_task: int) -> list:
    out = []
    for name, options in tasks.items():
        context = TaskContext(tokenizer=adapter.tokenizer, length=length, seed=seed, limit=None,
                              options={"repeats": -(-per_task // 5), **options})
        out += TASKS.get(name)().episodes(context)[:per_task]
    return out


def quality_table(records: list, params) -> dict:
    """Share of the future attention held by the tokens each scorer ranks first, at 10/25/50 % kept."""
    from namm_suite.namm.scorer import bam_scores

    ones = lambda r: torch.ones(r.features.shape[:-1], dtype=torch.bool)
    scorers = {
        "fitted NAMM": lambda r: bam_scores(r.features.float(), ones(r), params),
        "attention mass (EMA DC bin)": lambda r: r.features[..., 8].float(),
        "recency": lambda r: torch.arange(r.features.shape[1]).float().expand(r.features.shape[:-1]),
        "uniform noise": lambda r: torch.rand(r.features.shape[:-1]),
    }
    return {share: {name: ranking_quality(records, scorer, share) for name, scorer in scorers.items()}
            for share in (0.1, 0.25, 0.5)}


def record_all(adapter, eps: list, folder: Path, mu, var, args) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i, episode in enumerate(eps):
        path = folder / f"{episode.task}-{episode.episode_id}.pt"
        if not path.exists():
            start = time.perf_counter()
            recs = record_episode(adapter, episode, mu, var, args.update_every, keep_updates=args.keep_updates,
                                  seed=i, one_shot=args.one_shot, gamma=args.gamma)
            save_records(recs, path)
            logger.info("recorded %d/%d %s (%d updates, %.1fs)", i + 1, len(eps), path.name, len(recs),
                         time.perf_counter() - start)
        records += load_records(path)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--episodes", type=int, default=8, help="training episodes per task")
    parser.add_argument("--heldout", type=int, default=5, help="held-out episodes per task for the report")
    parser.add_argument("--update-every", type=int, default=64)
    parser.add_argument("--keep-updates", type=float, default=0.5, help="share of updates kept as lists")
    parser.add_argument("--keep", type=float, default=0.3, help="share of tokens the calibrated threshold keeps")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--one-shot", action="store_true",
                        help="also record each layer's one-shot (query-aware) eviction, target: the answer's attention")
    parser.add_argument("--one-shot-share", type=float, default=None, help="share of fit steps on one-shot records")
    parser.add_argument("--one-shot-only", action="store_true",
                        help="fit and calibrate on the one-shot records alone (a query-aware specialist)")
    parser.add_argument("--init", type=Path, default=None, help="start the fit from this NAMM checkpoint's θ")
    parser.add_argument("--target-power", type=float, default=1.0,
                        help="raise each list's target to this power before normalising (< 1: flatter)")
    parser.add_argument("--gamma", type=float, default=GAMMA, help="the features' per-query EMA coefficient")
    parser.add_argument("--kernel", type=int, default=1, help="score pooling width the checkpoint uses")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    adapter = create_adapter("language", args.model)
    train = episodes(adapter, TRAIN_TASKS, args.length, args.seed, args.episodes)
    heldout = episodes(adapter, HELDOUT_TASKS, args.length, 0, args.heldout)
    stats_path = args.out / "stats.pt"
    if args.init is not None and not stats_path.exists():  # the starting θ's standardisation
        start = NammPolicy.from_checkpoint(args.init)
        args.out.mkdir(parents=True, exist_ok=True)
        torch.save({"mu": start.mu, "var": start.var, "count": start.stats_count}, stats_path)
    if not stats_path.exists():
        args.out.mkdir(parents=True, exist_ok=True)
        stats = full_cache_statistics(
            lambda episode, policy: adapter.run(episode, MemoryManager(policy, MemoryConfig(update_every=args.update_every))),
            train[:: max(1, len(train) // 6)], args.gamma)
        torch.save({"mu": stats.mean, "var": stats.var, "count": stats.count}, stats_path)
    stats = torch.load(stats_path)
    train_records = record_all(adapter, train, args.out / "train", stats["mu"], stats["var"], args)
    heldout_records = record_all(adapter, heldout, args.out / "heldout", stats["mu"], stats["var"], args)
    if args.one_shot_only:
        train_records = [r for r in train_records if r.one_shot]
        heldout_records = [r for r in heldout_records if r.one_shot]
        if not train_records:
            raise SystemExit(f"{args.out}: no one-shot records; record them with --one-shot")
    fit = FitConfig(steps=args.steps, seed=args.seed, one_shot_share=args.one_shot_share,
                    target_power=args.target_power)
    init = NammPolicy.from_checkpoint(args.init).params if args.init else None
    params = fit_scorer(train_records, fit, init)
    quality = {kind: quality_table(records, params) for kind, records in
               (("all", heldout_records), ("one-shot", [r for r in heldout_records if r.one_shot])) if records}
    shift = calibrate_threshold(params, train_records, args.keep, kernel=args.kernel)
    policy = NammPolicy(gamma=args.gamma, kernel=args.kernel)
    policy.params = params
    policy.set_stats(stats["mu"], stats["var"], stats["count"])
    policy.hparams = dataclasses.replace(policy.hparams, update_every=args.update_every)  # kernel, γ: the policy's
    recipe = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    policy.save(args.checkpoint, provenance={**provenance(), "distill": recipe, "fit_history": fit.history,
                                             "threshold_shift": shift, "heldout_ranking_quality": quality,
                                             "train_tasks": TRAIN_TASKS, "train_records": len(train_records)})
    print(json.dumps({"train_records": len(train_records), "heldout_records": len(heldout_records),
                      "final_loss": fit.history[-1][1] if fit.history else None, "quality": quality}, indent=1))


if __name__ == "__main__":
    main()
