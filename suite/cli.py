"""The ``namm`` command. Imports are lazy so that ``namm --help`` is instant."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _positive(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def _add_memory_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", default="full", help="memory policy name (see `namm policies`)")
    parser.add_argument("--cache-size", type=_positive, default=None,
                        help="tokens kept per KV head at each memory update (a cap for the NAMM)")
    parser.add_argument("--update-every", type=_positive, default=64,
                        help="tokens between memory updates (paper: 512; a multiple of 16 for the NAMM)")
    parser.add_argument("--namm-checkpoint", default=None, help="NAMM .safetensors checkpoint (policy namm)")
    parser.add_argument("--selection", default="kappa", choices=["kappa", "threshold"],
                        help="NAMM eviction rule: per-layer kappa (reference) or strict per-head threshold")


def build_manager(args: argparse.Namespace):
    """A MemoryManager from the memory arguments of ``namm generate``/``namm demo``."""
    from .manager import MemoryConfig, MemoryManager
    from .policies import POLICIES, create_policy

    options = {}
    if args.policy == "namm":
        options = {"checkpoint": args.namm_checkpoint, "selection": args.selection}
    policy = create_policy(args.policy, **options)
    budget = args.cache_size if POLICIES.get(args.policy).uses_budget or args.policy == "namm" else None
    return MemoryManager(policy, MemoryConfig(update_every=args.update_every, budget=budget))


def cmd_policies(args: argparse.Namespace) -> int:
    from .policies import POLICIES, create_policy

    create_policy  # noqa: B018  (importing the package registers every policy)
    for name in POLICIES.names():
        doc = (POLICIES.get(name).__doc__ or "").strip().splitlines()[0]
        print(f"{name:10s} {doc}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from .adapters.language import LanguageAdapter

    if args.prompt_file is not None:
        path = Path(args.prompt_file)
        if not path.is_file():
            raise SystemExit(f"namm generate: prompt file not found: {path}")
        prompt = path.read_text(encoding="utf-8")
    elif args.prompt is not None:
        prompt = args.prompt
    else:
        raise SystemExit("namm generate: give --prompt-file FILE or --prompt TEXT")
    manager = build_manager(args)
    adapter = LanguageAdapter.from_pretrained(args.model)
    result = adapter.generate(prompt, manager, max_new_tokens=args.max_new_tokens, chat=not args.no_chat)
    stats = result.stats
    print(result.text)
    print(f"\n[{args.policy}] prompt {result.prompt_tokens} tokens, generated {result.new_tokens}; "
          f"kept per head: mean {stats.mean_kept:.1f}, peak {stats.peak_kept:.0f}, final {stats.final_kept:.1f}; "
          f"KV bytes: peak {stats.peak_kv_bytes / 2**20:.2f} MiB, final {stats.final_kv_bytes / 2**20:.2f} MiB "
          f"(padding {stats.padding_overhead:.1%}); {stats.n_updates} memory updates "
          f"({stats.update_seconds:.2f} s); prefill {result.prefill_seconds:.2f} s, "
          f"decode {result.decode_seconds:.2f} s", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(quick=args.quick, model=args.model)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="namm", description="Benchmark suite for learned KV-cache memory.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("policies", help="list the memory policies").set_defaults(func=cmd_policies)

    gen = sub.add_parser("generate", help="answer one prompt under a memory policy")
    gen.add_argument("--model", default="smollm2-135m", help="embedded model name or local HF checkpoint dir")
    gen.add_argument("--prompt-file", default=None)
    gen.add_argument("--prompt", default=None)
    gen.add_argument("--max-new-tokens", type=_positive, default=64)
    gen.add_argument("--no-chat", action="store_true", help="do not wrap the prompt in the chat template")
    _add_memory_args(gen)
    gen.set_defaults(func=cmd_generate)

    demo = sub.add_parser("demo", help="passkey retrieval with every policy on the embedded model")
    demo.add_argument("--model", default="smollm2-135m")
    demo.add_argument("--quick", action="store_true", help="one prompt, one budget (a smoke run)")
    demo.set_defaults(func=cmd_demo)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (KeyError, ValueError, FileNotFoundError) as err:
        print(f"namm {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
