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


def _default_namm() -> str | None:
    from .shipped import SHIPPED_NAMM

    return str(SHIPPED_NAMM) if SHIPPED_NAMM.with_suffix(".safetensors").exists() else None


def _namm_checkpoint(value: str) -> str | None:
    return None if value.lower() in ("none", "zero", "") else value


def _add_memory_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", default="full", help="memory policy name (see `namm policies`)")
    parser.add_argument("--cache-size", type=_positive, default=None,
                        help="tokens kept per KV head at each memory update (a cap for the NAMM)")
    parser.add_argument("--update-every", type=_positive, default=64,
                        help="tokens between memory updates (paper: 512; a multiple of 16 for the NAMM)")
    _add_namm_args(parser)


def _add_namm_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--namm-checkpoint", default=_default_namm(), type=_namm_checkpoint,
                        help="NAMM checkpoint for policy namm (default: the shipped one; 'none' = theta 0)")
    parser.add_argument("--selection", default="kappa", choices=["kappa", "threshold"],
                        help="NAMM eviction rule: per-layer kappa (reference) or strict per-head threshold")


def _load_include_paths(args: argparse.Namespace) -> None:
    from .tasks import load_task_dir

    for folder in args.include_path or []:
        load_task_dir(Path(folder))


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
    stats, extra = result.stats, result.extra
    print(result.output)
    print(f"\n[{args.policy}] prompt {extra['prompt_tokens']} tokens, generated {extra['new_tokens']}; "
          f"kept per head: mean {stats.mean_kept:.1f}, peak {stats.peak_kept:.0f}, final {stats.final_kept:.1f}; "
          f"KV bytes: peak {stats.peak_kv_bytes / 2**20:.2f} MiB, final {stats.final_kv_bytes / 2**20:.2f} MiB "
          f"(padding {stats.padding_overhead:.1%}); {stats.n_updates} memory updates "
          f"({stats.update_seconds:.2f} s); prefill {extra['prefill_seconds']:.2f} s, "
          f"decode {extra['decode_seconds']:.2f} s", file=sys.stderr)
    return 0


def _csv(kind):
    def parse(value: str) -> list:
        try:
            return [kind(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {value!r}") from None
    return parse


def cmd_tasks(args: argparse.Namespace) -> int:
    from .tasks import describe_tasks

    _load_include_paths(args)
    for spec in describe_tasks():
        print(f"{spec.name:24s} {spec.modality:9s} {spec.metric:22s} {spec.source}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import SweepConfig, run_sweep

    _load_include_paths(args)
    config = SweepConfig(
        tasks=args.task, policies=args.policy, cache_sizes=args.cache_size, adapter=args.adapter, model=args.model,
        seeds=args.seed, limit=args.limit, length=args.length, update_every=args.update_every,
        namm_checkpoint=args.namm_checkpoint, selection=args.selection, namm_cap=args.namm_cap,
        data_path=args.data_path,
    )
    written = run_sweep(config, Path(args.out))
    print(f"{written} new result rows in {args.out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    paths = [Path(p) for p in args.results]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"results file not found: {path}")
    for written in write_report(paths, Path(args.out), title=args.title):
        print(f"wrote {written}")
    return 0


def cmd_evolve(args: argparse.Namespace) -> int:
    from .evolution import EvolutionConfig, run_evolution

    config = EvolutionConfig.from_yaml(Path(args.config))
    for name in ("workers", "backend", "address"):
        if getattr(args, name) is not None:
            setattr(config, name, getattr(args, name))
    config.__post_init__()
    state = run_evolution(config, Path(args.out), max_generations=args.generations)
    print(f"finished generation {state.generation}; best per stage: {state.best}")
    return 0


def cmd_evolution_report(args: argparse.Namespace) -> int:
    from .evolution.report import write_summary

    out = Path(args.out)
    write_summary(Path(args.run), out, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


def cmd_lm_eval(args: argparse.Namespace) -> int:
    import json

    from .adapters.lm_eval_model import evaluate

    results = evaluate(args.model_args, args.tasks.split(","), args.include_path, args.limit)
    print(json.dumps(results, indent=2, default=str))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    profile = "quick" if args.quick else "full" if args.full else "default"
    checkpoint = None if args.namm_checkpoint in (None, "shipped") else args.namm_checkpoint
    models = {}
    for item in args.model or []:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise SystemExit(f"namm demo: --model takes MODALITY=MODEL (language=path/to/model), got {item!r}")
        models[name] = path
    run_demo(profile, Path(args.out), checkpoint, models)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import doctor

    return doctor(skip=tuple(args.skip or ()))


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

    demo = sub.add_parser("demo", help="the cross-modal zero-shot transfer table (language, video, decision)")
    size = demo.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a ~2-minute smoke run (one episode per modality)")
    size.add_argument("--full", action="store_true", help="more episodes, seeds and budgets (takes longer)")
    demo.add_argument("--out", default="results", help="folder for transfer.md/.png and the resumable rows")
    demo.add_argument("--namm-checkpoint", default=None,
                      help="NAMM applied zero-shot to every modality (default: the shipped one)")
    demo.add_argument("--model", action="append", metavar="MODALITY=MODEL",
                      help="replace a modality's model, e.g. language=path/to/hf-model (repeatable)")
    demo.set_defaults(func=cmd_demo)

    tasks = sub.add_parser("tasks", help="list the tasks (name, modality, metric, data source)")
    tasks.add_argument("--include-path", action="append", help="folder of user task YAML files")
    tasks.set_defaults(func=cmd_tasks)

    run = sub.add_parser("run", help="sweep adapter x task x policy x cache size x seed into a results file")
    run.add_argument("--adapter", default="language")
    run.add_argument("--model", default="smollm2-135m")
    run.add_argument("--task", type=_csv(str), required=True, help="task name(s), comma-separated")
    run.add_argument("--policy", type=_csv(str), required=True, help="policy name(s), comma-separated")
    run.add_argument("--cache-size", type=_csv(int), default=[], help="tokens per KV head, comma-separated")
    run.add_argument("--seed", type=_csv(int), default=[0])
    run.add_argument("--limit", type=_positive, default=None, help="episodes per task and seed")
    run.add_argument("--length", type=_positive, default=1024, help="prompt tokens (synthetic) or window")
    run.add_argument("--update-every", type=_positive, default=64)
    _add_namm_args(run)
    run.add_argument("--namm-cap", action="store_true", help="also run the NAMM capped at each cache size")
    run.add_argument("--data-path", default=None, help="local data for loader tasks")
    run.add_argument("--include-path", action="append", help="folder of user task YAML files")
    run.add_argument("--out", required=True, help="results JSONL (appended; finished episodes are skipped)")
    run.set_defaults(func=cmd_run)

    report = sub.add_parser("report", help="markdown table + PNG of score vs cache size from results")
    report.add_argument("results", nargs="+")
    report.add_argument("--out", required=True, help="markdown file; figures are written beside it")
    report.add_argument("--title", default=None)
    report.set_defaults(func=cmd_report)

    evolve = sub.add_parser("evolve", help="evolve a NAMM with CMA-ES (resumes from OUT/state.pkl)")
    evolve.add_argument("config", help="evolution YAML (see configs/)")
    evolve.add_argument("--out", required=True)
    evolve.add_argument("--generations", type=_positive, default=None, help="stop after this many more")
    evolve.add_argument("--workers", type=_positive, default=None)
    evolve.add_argument("--backend", choices=["local", "ray"], default=None)
    evolve.add_argument("--address", default=None, help="Ray cluster address (with --backend ray)")
    evolve.set_defaults(func=cmd_evolve)

    evo_report = sub.add_parser("evolution-report", help="fitness curve + table of an evolution run")
    evo_report.add_argument("run", help="the --out folder of `namm evolve`")
    evo_report.add_argument("--out", required=True, help="markdown file; the PNG is written beside it")
    evo_report.set_defaults(func=cmd_evolution_report)

    lm_eval = sub.add_parser("lm-eval", help="run lm-eval tasks through a memory policy")
    lm_eval.add_argument("--model-args", required=True,
                         help="e.g. pretrained=smollm2-135m,policy=h2o,cache_size=256,update_every=64")
    lm_eval.add_argument("--tasks", required=True)
    lm_eval.add_argument("--include-path", default=None)
    lm_eval.add_argument("--limit", type=_positive, default=None)
    lm_eval.set_defaults(func=cmd_lm_eval)

    doctor = sub.add_parser("doctor", help="check the installation (torch, transformers, model, MuJoCo, video)")
    doctor.add_argument("--skip", action="append", metavar="CHECK",
                        help="skip a check by name, e.g. --skip 'embedded model' (repeatable)")
    doctor.set_defaults(func=cmd_doctor)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (KeyError, ValueError, OSError, RuntimeError) as err:  # bad input or environment: one line, no traceback
        print(f"namm {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
