"""Compare memory policies by the teacher-forced likelihood of the reference answer (a dense score).

    python scripts/likelihood_table.py --out runs/likelihood_dev.jsonl --tasks prose_qa passkey \
        --length 1024 --seed 2000 --repeats 8 --cache 25% \
        --policies full "snapkv:kernel=15" "namm:checkpoint=checkpoints/namm_smollm2_v4"

Each episode's prompt is read once under the one-shot protocol (``--protocol``, evict once) and every policy
starts from that shared read (suite/shared_prefix.py), so a cell costs its eviction and the answer's pass.
The answer's geometric-mean token probability is the evolution's dense fitness; a greedy answer's task
metric (``namm run``) is 0 or 1 on most episodes, this one moves with every token the memory loses, so fewer
episodes separate two policies. Rows (one per episode and policy) are appended as they finish; a re-run
skips the cells already in ``--out``. The table gives, per task and policy, the mean probability with its
95% interval, its ratio to the full cache's and the paired mean difference in log-probability per token
against the full cache (with its 95% interval), and the mean share of the prompt's tokens held.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections import defaultdict
from pathlib import Path

import torch
from tqdm import tqdm

from namm_suite.adapters.base import create_adapter
from namm_suite.episode import EpisodeSettings, parse_cache_size
from namm_suite.policies.spec import PolicySpec
from namm_suite.provenance import provenance
from namm_suite.report import t95
from namm_suite.results import append_row, read_rows
from namm_suite.tasks import TASKS, TaskContext

logger = logging.getLogger("likelihood_table")
REFERENCE = "full"


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% interval (Student's t, as the reports; 0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, t95(n - 1) * sd / math.sqrt(n)


def table(rows: list[dict]) -> str:
    """The markdown table of ``rows`` (this script's rows), grouped by task and label."""
    cells: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)
    for row in rows:
        cells[(row["task"], row["label"])][row["episode_id"]] = row
    lines = ["| task | policy | n | answer probability | ratio to full | Δ log p per token vs full | held |",
             "|---|---|---|---|---|---|---|"]
    for (task, label), episodes in sorted(cells.items()):
        full = cells.get((task, REFERENCE), {})
        shared = [e for e in episodes if e in full]
        if not shared:
            continue
        prob, prob_ci = mean_ci([episodes[e]["probability"] for e in shared])
        full_prob = sum(full[e]["probability"] for e in shared) / len(shared)
        delta, delta_ci = mean_ci([episodes[e]["mean_logprob"] - full[e]["mean_logprob"] for e in shared])
        held = sum(episodes[e]["held"] for e in shared) / len(shared)
        lines.append(f"| {task} | {label} | {len(shared)} | {prob:.3f} ± {prob_ci:.3f} | "
                     f"{prob / max(full_prob, 1e-12):.3f} | {delta:+.3f} ± {delta_ci:.3f} | {held:.0%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="JSONL of rows, appended and resumed")
    parser.add_argument("--policies", nargs="+", required=True, help="policy specs as in namm run; full is added")
    parser.add_argument("--tasks", nargs="+", default=["prose_qa", "passkey"])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=8, help="prompts per depth (task option repeats)")
    parser.add_argument("--cache", default="25%", help="tokens per head, or a share of the prompt, e.g. 25%%")
    parser.add_argument("--protocol", default="query-aware", choices=["query-aware", "context"])
    parser.add_argument("--update-every", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    specs = [PolicySpec.parse(value, f"--policies[{i}]") for i, value in enumerate([REFERENCE, *args.policies])]
    labels = [spec.label or spec.name for spec in specs]
    if len(set(labels)) != len(labels):
        raise SystemExit(f"--policies: two policies share a label ({labels}); name them with label=")
    try:
        cache, _ = parse_cache_size(args.cache)
    except ValueError as err:
        raise SystemExit(f"--cache: {err}") from None
    settings = EpisodeSettings(adapter="language", model=args.model, seed=args.seed, length=args.length,
                               update_every=args.update_every, protocol=args.protocol, evict="once")
    done = {(r["task"], r["episode_id"], r["label"]) for r in read_rows(args.out)} if args.out.exists() else set()
    adapter = create_adapter("language", args.model)
    meta = {"model": args.model, "length": args.length, "seed": args.seed, "cache": args.cache,
            "protocol": args.protocol, "update_every": args.update_every, "provenance": provenance()}
    for task_name in args.tasks:
        context = TaskContext(tokenizer=adapter.tokenizer, length=args.length, seed=args.seed, limit=None,
                              options={"repeats": args.repeats})
        for episode in tqdm(TASKS.get(task_name)().episodes(context), desc=task_name):
            todo = [(spec, label) for spec, label in zip(specs, labels, strict=True)
                    if (task_name, episode.episode_id, label) not in done]
            if not todo:
                continue
            prefix = adapter.read_prefix(episode, settings.memory_config(None), reads_attention=True)
            for spec, label in todo:
                budget = None if spec.policy_class().budget_rule == "none" else cache
                manager = spec.build_manager(settings.memory_config(budget))
                result = adapter.answer_likelihood(episode, manager, prefix=prefix)
                stats = result.stats.as_dict()
                append_row(args.out, {
                    "task": task_name, "episode_id": episode.episode_id, "label": label, "policy": spec.name,
                    "policy_options": dict(spec.options), "probability": result.output,
                    "mean_logprob": result.extra["mean_logprob"], "answer_tokens": result.extra["answer_tokens"],
                    "held": stats["answer_kept"] / result.extra["prompt_tokens"], **meta})
            prefix.release()
    print(table(read_rows(args.out)))


if __name__ == "__main__":
    main()
