"""Which share of a passkey's tokens each policy keeps, layer by layer, under one query-aware eviction.

A diagnostic of results/evolution.md ("Why v2 lost"): for each development passkey prompt (seed 2000 by
default, needle depths 0.25–0.75), every policy is run at one cache size, its keep masks are recorded at
the eviction, and the share of the key's tokens (with the two after it) kept over the KV heads of each
layer is printed beside the answer.

    python scripts/kept_span.py --episodes 3 --cache-size 25% \\
        --policy namm:checkpoint=checkpoints/namm_smollm2_v2 --policy snapkv \\
        --policy namm:checkpoint=checkpoints/namm_smollm2_v4
"""

from __future__ import annotations

import argparse
import os

import torch

from namm_suite.adapters.base import create_adapter
from namm_suite.episode import EpisodeSettings, answer_and_score
from namm_suite.policies import PolicySpec
from namm_suite.tasks import TASKS, TaskContext

#: tokens after the key that belong to its span (SmolLM2 writes ". Remember" after it)
TAIL = 2


def key_span(tokenizer, ids: list[int], key: str) -> range:
    """Positions of the first occurrence of ``key``'s tokens in ``ids``, with :data:`TAIL` more."""
    key_ids = tokenizer(key, add_special_tokens=False).input_ids
    for start in range(len(ids) - len(key_ids) + 1):
        if ids[start:start + len(key_ids)] == key_ids:
            return range(start, start + len(key_ids) + TAIL)
    raise ValueError(f"the key {key!r} is not in the prompt's tokens")


def recording(manager) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """Make ``manager``'s policy log ``(layer, positions, keep)`` of batch row 0 at every selection."""
    log: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    select = manager.policy.select

    def logged(view):
        keep = select(view)
        log.append((view.layer, torch.where(view.valid[0], view.positions[0], -1), keep[0].clone()))
        return keep

    manager.policy.select = logged
    return log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", action="append", required=True, help="policy spec (repeat the flag)")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--cache-size", default="25%")
    parser.add_argument("--seed", type=int, default=2000)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--model", default="smollm2-135m")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    adapter = create_adapter("language", args.model)
    task = TASKS.get("passkey")()
    context = TaskContext(tokenizer=adapter.tokenizer, length=args.length, seed=args.seed, limit=None,
                          options={"repeats": args.episodes})
    episodes = [e for e in task.episodes(context) if 0 < e.metadata["depth"] < 1][: args.episodes]
    settings = EpisodeSettings(adapter="language", model=args.model, seed=args.seed, length=args.length,
                               protocol="query-aware", evict="once")
    for episode in episodes:
        ids = torch.cat([t.flatten() for t in adapter.encode_parts(episode.inputs)]).tolist()
        span = torch.tensor(list(key_span(adapter.tokenizer, ids, episode.references[0])))
        print(f"{episode.episode_id}: key {episode.references[0]} at tokens {span[0]}–{span[-1]} of {len(ids)}")
        for text in args.policy:
            manager = PolicySpec.parse(text).build_manager(settings.memory_config(args.cache_size))
            log = recording(manager)
            prediction, score = answer_and_score(adapter, task, episode, manager)
            shares = [float((keep & torch.isin(positions, span)).sum() / (torch.isin(positions, span)).sum())
                      for _, positions, keep in sorted(log, key=lambda entry: entry[0])]
            print(f"  {text}: score {score:.0f}, answer {prediction.output!r}")
            print("    key kept per layer: " + " ".join(f"{share:.2f}" for share in shares))


if __name__ == "__main__":
    main()
