"""Cross-check the project's baselines against NVIDIA's kvpress on the same episodes (not run in CI).

Both sides run the ``context`` protocol with one-shot compression (``--protocol context --evict once``): the
context is prefilled and compressed once to 75/50/25 % of its tokens, then the question and the answer are
read with no eviction. kvpress's presses and the project's policies of the same name, with kvpress's
settings (SnapKV window 64, kernel 5, average pooling; TOVA averaged over heads; StreamingLLM 4 sinks):

    full ↔ no press, streaming ↔ StreamingLLMPress, snapkv ↔ SnapKVPress, tova ↔ TOVAPress,
    keynorm ↔ KnormPress, random ↔ RandomPress

Episodes: LongBench-format QA the project generates itself (task ``prose_qa``: real prose from
``pydoc_data.topics`` with a planted fact), written as a LongBench JSONL file and read back by the stock
``longbench_multifieldqa_en`` loader, on the embedded SmolLM2-135M. Scores: LongBench's qa_f1 (×100) of
each side's answers, computed by the project's metric for both.

kvpress needs an older transformers, so it runs in its own virtual environment (git-ignored)::

    python3 -m venv .venv-kvpress && .venv-kvpress/bin/pip install torch==2.14.1 kvpress
    .venv/bin/python scripts/kvpress_crosscheck.py episodes          # runs/kvpress_crosscheck/episodes.jsonl
    .venv/bin/python scripts/kvpress_crosscheck.py project           # the project's rows (namm run)
    .venv-kvpress/bin/python scripts/kvpress_crosscheck.py kvpress   # kvpress's answers
    .venv/bin/python scripts/kvpress_crosscheck.py report            # results/kvpress_crosscheck.md

The ``kvpress`` step imports nothing from the project: it reads the episodes' context, question and answer
cue and the converted model folder, both recorded by the ``episodes`` step.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

WORK = Path("runs/kvpress_crosscheck")
KEEP = (75, 50, 25)  # percent of the context kept
TASK = "longbench_multifieldqa_en"


class Counterpart(NamedTuple):
    """A project policy's kvpress counterpart: the press class (None: no press, the full cache), its arguments
    besides ``compression_ratio``, and the project's policy options that match kvpress's defaults."""

    press: str | None
    press_args: dict[str, Any]
    options: dict[str, Any]


# by the project's policy name; the kvpress step runs without the project, so the names are spelled here, once
COUNTERPARTS = {
    "full": Counterpart(None, {}, {}),
    "streaming": Counterpart("StreamingLLMPress", {}, {}),
    "snapkv": Counterpart("SnapKVPress", {}, {"window": 64, "kernel": 5, "pooling": "avg"}),
    "tova": Counterpart("TOVAPress", {}, {"head_average": True}),
    "keynorm": Counterpart("KnormPress", {}, {}),
    "random": Counterpart("RandomPress", {"seed": 0}, {}),
}
POLICIES = tuple(COUNTERPARTS)
REFERENCE = next(name for name, counterpart in COUNTERPARTS.items() if counterpart.press is None)


def keeps(policy: str) -> tuple[int | None, ...]:
    """The context shares (percent) ``policy`` runs at: none for the full cache."""
    return (None,) if policy == REFERENCE else KEEP


def target(policy: str) -> float:
    """The largest score difference (points) that agrees: 3 for the full cache, 5 for a press."""
    return 3.0 if policy == REFERENCE else 5.0


NOTES = """
## Known differences (deliberate)

- **Newest token.** The project always keeps the newest token of the compressed part (`MemoryConfig.protected
  = 1`, the NAMM reference's schedule). kvpress keeps it for SnapKV and TOVA (padded with the maximum score)
  and for StreamingLLM (a recency window), but not for Knorm and Random, so their kept sets can differ by that
  one token; on a 135M model one token can flip a borderline answer, and with few episodes one flipped
  episode moves a cell by several points ("same score" counts the episodes whose scores agree).
- **Random.** Both sides draw uniform scores with seed 0, from different generators and in a different order
  (the project per layer over `[B, H, K]`, kvpress per layer over its own shapes): the kept sets differ, so
  only the statistics agree, not the episodes.
- **Keep count.** kvpress keeps `int(n × keep)` tokens, the project `round(n × keep)`: one token more when
  `n × keep` has a fraction above .5 (e.g. 120 against 119 of a 479-token context at 25 %).
"""


def episodes(args: argparse.Namespace) -> None:
    """Generate prose_qa episodes as a LongBench JSONL file and the split inputs the kvpress side reads."""
    from transformers import AutoTokenizer

    from namm_suite.adapters.language import split_prompt
    from namm_suite.adapters.models import resolve_model
    from namm_suite.results import write_text_atomic
    from namm_suite.tasks import TASKS, TaskContext
    from namm_suite.tasks.language.prose_qa import longbench_record

    model_dir = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    options = {"lengths": list(args.lengths), "repeats": args.repeats}
    generated = TASKS.get("prose_qa")().episodes(TaskContext(tokenizer=tokenizer, seed=args.seed, options=options))
    data = WORK / "episodes.jsonl"
    write_text_atomic(data, "".join(json.dumps(longbench_record(e)) + "\n" for e in generated))
    loaded = TASKS.get(TASK)().episodes(TaskContext(tokenizer=tokenizer, length=args.window, data_path=data))
    lines = []
    for episode in loaded:
        context, question, cue = split_prompt(episode.inputs)
        lines.append(json.dumps({"id": episode.episode_id, "context": context, "question": question, "cue": cue,
                                 "max_new_tokens": args.max_new_tokens, "references": episode.references}))
    write_text_atomic(WORK / "kvpress_inputs.jsonl", "\n".join(lines) + "\n")
    write_text_atomic(WORK / "model.json", json.dumps({"model_dir": str(model_dir), "window": args.window,
                                                       "max_new_tokens": args.max_new_tokens}))
    print(f"{len(loaded)} episodes in {data}")


def project(args: argparse.Namespace) -> None:
    """The project's side: one ``namm run`` sweep under the context protocol with one-shot compression."""
    from namm_suite.runner import SweepConfig, run_sweep

    settings = json.loads((WORK / "model.json").read_text())
    config = SweepConfig(tasks=[TASK], policies=list(POLICIES), cache_sizes=[f"{k}%" for k in KEEP],
                         model=args.model, length=settings["window"], update_every=64,
                         data_path=str(WORK / "episodes.jsonl"), protocol="context", evict="once",
                         max_new_tokens=settings["max_new_tokens"],
                         policy_options={name: c.options for name, c in COUNTERPARTS.items() if c.options})
    summary = run_sweep(config, WORK / "project.jsonl")
    print(f"{summary.written} rows, {len(summary.failed)} failed")


def kvpress_side(args: argparse.Namespace) -> None:
    """kvpress's side (run with .venv-kvpress): its pipeline and presses on the same contexts and questions."""
    import kvpress
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    model_dir = json.loads((WORK / "model.json").read_text())["model_dir"]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    pipe = pipeline("kv-press-text-generation", model=model, tokenizer=AutoTokenizer.from_pretrained(model_dir),
                    device="cpu")
    out = WORK / "kvpress.jsonl"
    done = {(row["id"], row["policy"], row["keep"]) for row in map(json.loads, out.open())} if out.exists() else set()
    items = [json.loads(line) for line in (WORK / "kvpress_inputs.jsonl").open()]
    with out.open("a") as handle:
        for item in items:
            for policy, counterpart in COUNTERPARTS.items():
                for keep in keeps(policy):
                    if (item["id"], policy, keep) in done:
                        continue
                    start = time.perf_counter()
                    press = None if counterpart.press is None else getattr(kvpress, counterpart.press)(
                        compression_ratio=1 - keep / 100, **counterpart.press_args)
                    answer = pipe(item["context"], question=item["question"], answer_prefix=item["cue"], press=press,
                                  max_new_tokens=item["max_new_tokens"], max_context_length=10**6)["answer"]
                    handle.write(json.dumps({"id": item["id"], "policy": policy, "keep": keep, "answer": answer,
                                             "seconds": time.perf_counter() - start}) + "\n")
                    handle.flush()
    print(f"kvpress answers in {out}")


def report(args: argparse.Namespace) -> None:
    """Both sides' mean qa_f1 (×100) per (policy, keep) cell, their difference and the target."""
    from namm_suite.results import read_rows, write_text_atomic
    from namm_suite.tasks import TASKS, TaskContext

    task = TASKS.get(TASK)()
    by_id = {e.episode_id: e for e in task.episodes(TaskContext(data_path=WORK / "episodes.jsonl"))}
    ours: dict[tuple[str, int | None], dict[str, float]] = {}  # cell -> episode id -> score
    context_tokens, kept = [], {}
    for row in read_rows(WORK / "project.jsonl"):
        if row.get("status") == "ok":
            keep = None if row["cache_size"] is None else int(str(row["cache_size"]).rstrip("%"))
            ours.setdefault((row["policy"], keep), {})[row["episode_id"]] = 100 * row["score"]
            kept.setdefault((row["policy"], keep), []).append(row["context_kept"])
            if row["policy"] == REFERENCE:
                context_tokens.append(row["context_tokens"])
    theirs: dict[tuple[str, int | None], dict[str, float]] = {}
    for row in read_rows(WORK / "kvpress.jsonl"):
        theirs.setdefault((row["policy"], row["keep"]), {})[row["id"]] = 100 * task.score(row["answer"], by_id[row["id"]])
    lines = ["# kvpress cross-check", "",
             (f"Generated by `scripts/kvpress_crosscheck.py` ({len(by_id)} LongBench-format episodes from `prose_qa`, "
             f"{len(set(ours.get((REFERENCE, None), {})) & set(theirs.get((REFERENCE, None), {})))} of them finished by "
             "both sides (each cell below averages the episodes both sides finished), "
             f"read by `{TASK}`; context {min(context_tokens)}–{max(context_tokens)} tokens of SmolLM2-135M, chat "
             "template, answer cue after the assistant header). Protocol `context` with one-shot compression on "
             "both sides (`namm run --protocol context --evict once`; kvpress's pipeline); scores are LongBench "
             "qa_f1 × 100 by the project's metric; answers capped at "
             f"{json.loads((WORK / 'model.json').read_text())['max_new_tokens']} tokens on both sides. Target: |Δ| ≤ 3 for full, ≤ 5 otherwise."), "",
             "| policy | keep | project | kvpress | Δ | within target | same score | project: context kept/head |",
             "|---|---|---|---|---|---|---|---|"]
    for policy in POLICIES:
        for keep in keeps(policy):
            both = sorted(set(ours.get((policy, keep), {})) & set(theirs.get((policy, keep), {})))
            a = [ours[(policy, keep)][i] for i in both]  # the episodes both sides finished
            b = [theirs[(policy, keep)][i] for i in both]
            if not both:
                lines.append(f"| {policy} | {keep or 100}% | | | | not run | | |")
                continue
            delta = sum(a) / len(a) - sum(b) / len(b)
            ok = "yes" if abs(delta) <= target(policy) else "**no**"
            held = kept[(policy, keep)]
            same = sum(x == y for x, y in zip(a, b, strict=True))
            lines.append(f"| {policy} | {keep or 100}% | {_mean(a)} | {_mean(b)} | {delta:+.1f} | {ok} | "
                         f"{same}/{len(both)} | {sum(held) / len(held):.1f} |")
    write_text_atomic(Path(args.out), "\n".join(lines) + "\n" + NOTES)
    print("\n".join(lines))


def _mean(values: list[float]) -> str:
    return f"{sum(values) / len(values):.1f}" if values else "—"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["episodes", "project", "kvpress", "report"])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--max-new-tokens", type=int, default=32,
                        help="answer budget on both sides (LongBench's multifieldqa_en: 64) (episodes step)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[520, 620, 720],
                        help="prose_qa prompt lengths in tokens (episodes step)")
    parser.add_argument("--repeats", type=int, default=2, help="episodes per (length, depth) (episodes step)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window", type=int, default=4096, help="LongBench truncation window (no cut)")
    parser.add_argument("--out", default="results/kvpress_crosscheck.md")
    args = parser.parse_args()
    {"episodes": episodes, "project": project, "kvpress": kvpress_side, "report": report}[args.step](args)


if __name__ == "__main__":
    main()
