"""The attention hook's speed against plain transformers SDPA, side by side in one run (issue 16 targets).

One model, switched between ``attn_implementation="sdpa"`` and ``"namm"``, random prompt ids, one torch
thread by default. For each length it times:

- plain SDPA: prefill in the manager's chunks with a ``DynamicCache``, then greedy decode steps;
- the full-cache policy through the hook: the same chunks and steps (target ≤ 1.05× plain);
- every budgeted policy (TOVA, SnapKV, StreamingLLM, H2O, ...) at a 25 % budget: prefill ÷ full-policy
  prefill (targets ≤ 1.15× for TOVA, SnapKV and StreamingLLM, ≤ 1.3× for H2O) and decode per token ÷ full
  (target ≤ 0.5× at 8k);
- the NAMM (shipped checkpoint): memory-update seconds ÷ prefill seconds (target ≤ 10 % at 8k) and its
  whole episode (prefill + decode) ÷ plain SDPA (target ≤ 1.2× on 1–2k-token prompts).

    python -m benchmarks.hook_speed --lengths 1024 2048 --repeats 3  # ~15 minutes on one CPU thread
    python -m benchmarks.hook_speed --device cuda --dtype bf16 --lengths 8192 32768 --random llama3-8b
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import DynamicCache

from namm_suite.adapters.models import load_causal_lm
from namm_suite.atomic import write_bytes_atomic
from namm_suite.attention import ATTN_IMPLEMENTATION
from namm_suite.device import add_device_args, resolve_device, resolve_dtype
from namm_suite.manager import MemoryConfig
from namm_suite.policies import NAMM, REFERENCE, PolicySpec, is_reference, policy_names
from namm_suite.shipped import SHIPPED_NAMM

CHUNK, UPDATE_EVERY, BUDGET_FRACTION = 128, 512, 0.25
# random-weight model shapes (--random): what matters for speed is the shape, not the weights
SHAPES = {
    "llama3-8b": {"vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                  "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 131072,
                  "rope_theta": 500000.0},
}


@dataclass
class Timing:
    """One variant at one length: prefill and decode seconds, memory-update seconds, peak device bytes."""

    label: str
    length: int
    prefill_s: float
    decode_ms: float  # per token
    update_s: float = 0.0
    peak_bytes: int = 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> int:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0


@torch.no_grad()
def time_plain(model, ids: torch.Tensor, steps: int, label: str = "plain sdpa") -> Timing:
    """Plain transformers: the prompt in CHUNK-token passes with a DynamicCache, then ``steps`` greedy steps."""
    device = ids.device
    _reset_peak(device)
    cache = DynamicCache(config=model.config)
    start = time.perf_counter()
    for first in range(0, ids.shape[1], CHUNK):
        logits = model(input_ids=ids[:, first:first + CHUNK], cache=cache, use_cache=True, logits_to_keep=1).logits
    _sync(device)
    prefill = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        logits = model(input_ids=logits[:, -1].argmax(-1, keepdim=True), cache=cache, use_cache=True).logits
    _sync(device)
    return Timing(label, ids.shape[1], prefill, 1000 * (time.perf_counter() - start) / max(steps, 1),
                  peak_bytes=_peak(device))


@torch.no_grad()
def time_policy(model, ids: torch.Tensor, steps: int, name: str, budget: int | None) -> Timing:
    """A policy through the hook (a NAMM: the shipped checkpoint): the manager's chunked prefill, then
    ``steps`` greedy steps."""
    device = ids.device
    manager = PolicySpec(name).build_manager(MemoryConfig(update_every=UPDATE_EVERY, budget=budget, chunk_size=CHUNK),
                                             checkpoint=str(SHIPPED_NAMM))
    manager.new_cache()
    _reset_peak(device)
    start = time.perf_counter()
    logits = manager.forward(model, ids)
    _sync(device)
    prefill = time.perf_counter() - start
    prefill_updates = manager.stats().update_seconds
    start = time.perf_counter()
    for _ in range(steps):
        logits = manager.forward(model, logits.argmax(-1, keepdim=True))
    _sync(device)
    label = name if budget is None else f"{name} @25%"
    return Timing(label, ids.shape[1], prefill, 1000 * (time.perf_counter() - start) / max(steps, 1),
                  prefill_updates, _peak(device))


def load(model_name: str | None, random: str | None, device: str, dtype: torch.dtype):
    """The model with the namm hook: a checkpoint, or random weights of a :data:`SHAPES` entry."""
    if random is None:
        return load_causal_lm(model_name, attn_implementation=ATTN_IMPLEMENTATION, dtype=dtype, device=device)[0]
    from transformers import AutoModelForCausalLM, LlamaConfig

    with torch.device(device):
        model = AutoModelForCausalLM.from_config(LlamaConfig(**SHAPES[random]),
                                                 attn_implementation=ATTN_IMPLEMENTATION, dtype=dtype)
    return model.eval()


def run(model_name: str | None, lengths: list[int], steps: int, device: str, dtype: str,
        random: str | None = None, repeats: int = 1, policies: list[str] | None = None) -> list[Timing]:
    """Every variant at every length, ``repeats`` times in turn; each timing is the median of its repeats.
    ``policies``: the budgeted policies to time (default: every registered one)."""
    device = resolve_device(device)
    model = load(model_name, random, device, resolve_dtype(dtype))
    rows = []
    for length in lengths:
        ids = torch.randint(100, model.config.vocab_size, (1, length), generator=torch.Generator().manual_seed(0))
        trials = [_variants(model, ids.to(device), steps, policies) for _ in range(repeats)]
        rows.extend(_median(list(same)) for same in zip(*trials, strict=True))
    return rows


def _variants(model, ids: torch.Tensor, steps: int, policies: list[str] | None = None) -> list[Timing]:
    """Plain SDPA (after a warm-up), the full policy, the budgeted policies at 25 % (``policies``, default
    all) and the NAMM, once each."""
    model.set_attn_implementation("sdpa")
    time_plain(model, ids[:, :CHUNK], 1)  # warm-up
    rows = [time_plain(model, ids, steps)]
    model.set_attn_implementation(ATTN_IMPLEMENTATION)
    rows.append(time_policy(model, ids, steps, REFERENCE, None))
    for name in policies or policy_names("required"):
        rows.append(time_policy(model, ids, steps, name, round(BUDGET_FRACTION * ids.shape[1])))
    rows.append(time_policy(model, ids, steps, NAMM, None))
    return rows


def _median(trials: list[Timing]) -> Timing:
    """One variant's repeats as one timing: the median of each time, the largest peak."""
    first = trials[0]
    return Timing(first.label, first.length, statistics.median(t.prefill_s for t in trials),
                  statistics.median(t.decode_ms for t in trials), statistics.median(t.update_s for t in trials),
                  max(t.peak_bytes for t in trials))


def table(rows: list[Timing]) -> str:
    """Markdown: every variant with its ratios against plain SDPA and against the full policy."""
    lines = [("| tokens | variant | prefill s | ÷ plain | ÷ full | decode ms/token | ÷ plain | ÷ full | "
              "update ÷ prefill | peak MiB |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        plain = next(r for r in rows if r.length == row.length and r.label == "plain sdpa")
        full = next(r for r in rows if r.length == row.length and is_reference(r.label))
        peak = f"{row.peak_bytes / 2**20:.0f}" if row.peak_bytes else "-"
        lines.append(f"| {row.length} | {row.label} | {row.prefill_s:.2f} | {row.prefill_s / plain.prefill_s:.2f} | "
                     f"{row.prefill_s / full.prefill_s:.2f} | {row.decode_ms:.1f} | "
                     f"{row.decode_ms / plain.decode_ms:.2f} | {row.decode_ms / full.decode_ms:.2f} | "
                     f"{row.update_s / row.prefill_s:.1%} | {peak} |")
    return "\n".join(lines)


def namm_episode(rows: list[Timing], steps: int) -> list[str]:
    """A whole NAMM episode (prefill + ``steps`` decode steps) ÷ the same on plain SDPA, per length."""
    out = []
    for length in sorted({r.length for r in rows}):
        plain = next(r for r in rows if r.length == length and r.label == "plain sdpa")
        namm = next(r for r in rows if r.length == length and r.label == NAMM)
        total = (namm.prefill_s + steps * namm.decode_ms / 1000) / (plain.prefill_s + steps * plain.decode_ms / 1000)
        out.append(f"- {length} tokens: NAMM episode ÷ plain SDPA = {total:.2f}")
    return out


def main(argv: list[str] | None = None) -> list[Timing]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--random", choices=sorted(SHAPES), default=None,
                        help="random weights of this shape instead of --model")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--steps", type=int, default=32, help="greedy decode steps after the prompt")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run every variant this many times in turn and report the medians (a shared machine)")
    parser.add_argument("--policies", nargs="+", default=None,
                        help="budgeted policies to time (default: all); plain SDPA, full and the NAMM always run")
    parser.add_argument("--out", type=Path, default=None, help="also write the result as a markdown file")
    add_device_args(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    unknown = sorted(set(args.policies or ()) - set(policy_names("required")))
    if unknown:
        parser.error(f"--policies: {', '.join(unknown)} are not budgeted policies "
                     f"(choose from {', '.join(policy_names('required'))})")
    rows = run(args.model, args.lengths, args.steps, args.device, args.dtype, args.random, args.repeats,
               args.policies)
    text = "\n".join([table(rows), "", *namm_episode(rows, args.steps)])
    print(text)
    if args.out is not None:
        where = torch.cuda.get_device_name() if resolve_device(args.device) == "cuda" else "cpu"
        model = f"{args.random} (random weights)" if args.random else args.model
        header = (f"# Hook speed on {where}\n\nModel: {model}, {args.dtype}, prefill chunks of {CHUNK}, an update "
                  f"every {UPDATE_EVERY} tokens, budgeted policies at {BUDGET_FRACTION:.0%} of the prompt, "
                  f"{args.steps} decode steps, medians of {args.repeats} repeats; written by "
                  f"`python -m benchmarks.hook_speed`.\n\n")
        write_bytes_atomic(args.out, (header + text + "\n").encode())
    return rows


if __name__ == "__main__":
    main()
