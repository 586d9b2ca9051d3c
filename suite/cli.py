"""The ``namm`` command. Imports are lazy so that ``namm --help`` and argument errors are instant.

Exit codes: 0 success; 2 bad input (a bad option, file or value: one line on stderr naming it and the fix);
1 a failed run (episodes that failed, an unexpected error); 130 interrupted (Ctrl-C). Tracebacks only
with ``-v``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .device import add_device_args, placement


class SweepFailed(Exception):
    """A run that finished but whose episodes failed (exit 1)."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless its help already names one or the default is empty."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if "default" in (action.help or "") or action.default in (None, False, [], argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def _task_option(value: str) -> tuple[str, object]:
    """``KEY=VALUE`` (``TASK.KEY=VALUE`` for one task of the sweep); the value is read as YAML."""
    import yaml

    key, sep, raw = value.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. frames=16), got {value!r}")
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError:
        return key.strip(), raw


def _model_pair(value: str) -> tuple[str, str]:
    """``MODALITY=MODEL`` of ``namm demo --model``."""
    name, sep, model = value.partition("=")
    if not sep or not name.strip() or not model.strip():
        raise argparse.ArgumentTypeError(f"expected MODALITY=MODEL (e.g. language=path/to/model), got {value!r}")
    return name.strip(), model.strip()


def _cache_size(value: str) -> int | str:
    """``128`` (tokens per KV head) or ``25%`` (of each episode's context)."""
    if value.endswith("%"):
        float(value[:-1])  # ValueError for "x%"
        return value
    return int(value)


def _policy_options(pairs: list[tuple[str, object]]) -> dict[str, dict]:
    """``--policy-option POLICY.FIELD=VALUE`` pairs as ``{policy: {field: value}}``."""
    options: dict[str, dict] = {}
    for key, value in pairs:
        policy, dot, name = key.partition(".")
        if not dot or not name:
            raise ValueError(f"--policy-option takes POLICY.FIELD=VALUE (e.g. snapkv.window=64), got {key!r}")
        options.setdefault(policy, {})[name] = value
    return options


def _namm_checkpoint(value: str) -> str | None:
    return None if value.lower() in ("none", "zero", "") else value


def _add_memory_args(parser: argparse.ArgumentParser) -> None:
    from .policies import REFERENCE

    parser.add_argument("--policy", default=REFERENCE, help="memory policy name or NAME:KEY=VALUE,... (see `namm "
                        "policies`)")
    parser.add_argument("--cache-size", type=_positive, default=None,
                        help="tokens kept per KV head at each memory update (a cap for the NAMM; needed by "
                        "budgeted policies)")
    parser.add_argument("--update-every", type=_positive, default=64,
                        help="tokens between memory updates (paper: 512; a multiple of 16 for the NAMM)")
    _add_namm_args(parser)


def _policy_specs(value: str) -> list[str]:
    """``--policy`` of ``namm run``: comma-separated policy specs (``h2o,namm:selection=threshold``)."""
    from .policies.spec import split_specs

    return split_specs(value)


def _selection(value: str) -> str:
    """A NAMM selection rule name (imported when parsed, so ``namm --help`` loads no torch)."""
    from .namm.selection import SELECTIONS

    if value not in SELECTIONS:
        raise argparse.ArgumentTypeError(f"unknown NAMM selection rule {value!r}; valid: {', '.join(SELECTIONS)}")
    return value


def _add_namm_args(parser: argparse.ArgumentParser) -> None:
    from .shipped import default_namm

    parser.add_argument("--namm-checkpoint", default=default_namm(), type=_namm_checkpoint,
                        help="NAMM checkpoint for policy namm (default: the shipped one; 'none' = theta 0)")
    parser.add_argument("--selection", default="kappa", type=_selection,
                        help="NAMM eviction rule: per-layer kappa (reference) or strict per-head threshold")


def _load_include_paths(args: argparse.Namespace) -> None:
    from .tasks import load_task_dir

    for folder in args.include_path or []:
        load_task_dir(Path(folder))


def build_manager(args: argparse.Namespace):
    """A MemoryManager from the memory arguments of ``namm generate``."""
    from .manager import MemoryConfig
    from .policies import PolicySpec

    return PolicySpec.parse(args.policy, "--policy").build_manager(
        MemoryConfig(update_every=args.update_every, budget=args.cache_size), checkpoint=args.namm_checkpoint,
        selection=args.selection)


def cmd_policies(args: argparse.Namespace) -> int:
    from .policies import POLICIES, create_policy

    create_policy  # noqa: B018  (importing the package registers every policy)
    for name in POLICIES.names():
        doc = (POLICIES.get(name).__doc__ or "").strip().splitlines()[0]
        print(f"{name:10s} {doc}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    prompt = _read_prompt(args)  # before the heavy imports: a bad prompt fails at once
    manager = build_manager(args)  # a bad policy setting fails before transformers is imported
    from .adapters.language import LanguageAdapter

    adapter = LanguageAdapter.from_pretrained(args.model, **placement(args.device, args.dtype))
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


def _read_prompt(args: argparse.Namespace) -> str:
    """The prompt of ``namm generate``: ``--prompt-file`` (UTF-8) or ``--prompt``; never empty."""
    if args.prompt_file is not None:
        path = Path(args.prompt_file)
        if path.is_dir():
            raise ValueError(f"prompt file {path} is a folder: give a text file")
        if not path.is_file():
            raise FileNotFoundError(f"prompt file not found: {path}")
        data = path.read_bytes()
        try:
            prompt = data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = data[: err.start].count(b"\n") + 1
            raise ValueError(f"{path}:{line}: not UTF-8 text (byte {err.start}); save the file as UTF-8") from None
    elif args.prompt is not None:
        prompt = args.prompt
    else:
        raise ValueError("give --prompt-file FILE or --prompt TEXT")
    if not prompt.strip():
        raise ValueError("the prompt is empty: give some text with --prompt or --prompt-file")
    return prompt


def _csv(kind, what: str):
    def parse(value: str) -> list:
        items = [v.strip() for v in value.split(",") if v.strip()]
        try:
            return [kind(v) for v in items]
        except ValueError:
            bad = next(v for v in items if not _parses(kind, v))
            raise argparse.ArgumentTypeError(f"{bad!r} is not {what} (in {value!r})") from None
    return parse


def _parses(kind, value: str) -> bool:
    try:
        kind(value)
    except ValueError:
        return False
    return True


def cmd_tasks(args: argparse.Namespace) -> int:
    from .tasks import describe_tasks

    _load_include_paths(args)
    rows = [("TASK", "MODALITY", "METRIC", "SOURCE")] + [
        (spec.name, spec.modality, spec.metric, spec.source) for spec in describe_tasks()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[3])
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import SweepConfig, run_sweep
    from .sweep_file import SweepRun

    _load_include_paths(args)
    if args.sweep is not None:
        return _run_sweep_file(args)
    if not args.task or not args.policy or not args.out:
        raise ValueError("namm run needs a sweep file (namm run sweep.yaml) or --task, --policy and --out")
    config = SweepConfig(
        tasks=args.task, policies=args.policy, cache_sizes=args.cache_size, adapter=args.adapter,
        model=args.model,
        seeds=args.seed, limit=args.limit, length=args.length, update_every=args.update_every,
        namm_checkpoint=args.namm_checkpoint, selection=args.selection, namm_cap=args.namm_cap,
        data_path=args.data_path, task_options=_scoped(args.task_option or []), protocol=args.protocol,
        evict=args.evict, max_new_tokens=args.max_new_tokens, chat_template=args.chat_template,
        policy_options=_policy_options(args.policy_option or []), device=args.device, dtype=args.dtype,
        share_prefix=not args.no_share_prefix, batch_size=args.batch_size,
    )
    if args.plan:
        return _print_plan([SweepRun(config, Path(args.out))], args.retry_errors)
    summary = run_sweep(config, Path(args.out), retry_errors=args.retry_errors)
    print(f"{summary.written} new result rows in {args.out}")
    _check_failed([summary])
    return 0


def _run_sweep_file(args: argparse.Namespace) -> int:
    """``namm run sweep.yaml``: every sweep of the file (``--out`` overrides its results files)."""
    from .sweep_file import load_sweep_file, run_sweep_file

    if args.task or args.policy:
        raise ValueError(f"give the sweep file {args.sweep} or --task/--policy, not both (the file sets them)")
    sweeps = load_sweep_file(Path(args.sweep), Path(args.out) if args.out else None)
    if args.plan:
        return _print_plan(sweeps, args.retry_errors)
    summaries = run_sweep_file(sweeps, retry_errors=args.retry_errors)
    for out in dict.fromkeys(sweep.out for sweep in sweeps):
        written = sum(s.written for sweep, s in zip(sweeps, summaries, strict=True) if sweep.out == out)
        print(f"{written} new result rows in {out}")
    _check_failed(summaries)
    return 0


def _print_plan(sweeps: list, retry_errors: bool) -> int:
    """``namm run --plan``: print each sweep's done / failed / missing episodes per cell (nothing runs)."""
    from .plan import format_plan, plan_sweeps

    print(format_plan(*plan_sweeps(sweeps), retry_errors=retry_errors))
    return 0


def _check_failed(summaries: list) -> None:
    """Raise :class:`SweepFailed` when episodes of the sweeps failed."""
    failed = [row for summary in summaries for row in summary.failed]
    if failed:
        cells = sum(summary.cells for summary in summaries)
        logs = ", ".join(dict.fromkeys(str(s.log) for s in summaries if s.failed))
        raise SweepFailed(f"{len(failed)} of {cells} episodes failed (first: {failed[0]['error']}); tracebacks "
                          f"in {logs}; fix the cause and rerun with --retry-errors")


def _scoped(pairs: list[tuple[str, object]]) -> dict:
    """``--task-option`` pairs as task options: ``TASK.KEY`` goes under the task's own entry."""
    options: dict = {}
    for key, value in pairs:
        task, dot, name = key.rpartition(".")
        if dot:
            options.setdefault(task, {})[name] = value
        else:
            options[key] = value
    return options


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    paths = [Path(p) for p in args.results]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"results file not found: {path}")
    report = write_report(paths, Path(args.out), title=args.title, axis=args.axis, spread=args.spread,
                          notes=Path(args.notes) if args.notes else None)
    for written in report.paths:
        print(f"wrote {written}")
    if report.failed:
        print(f"namm report: {report.failed} failed episodes in {len(report.failed_cells)} cells are listed "
              f"under 'Failed episodes' in {args.out}", file=sys.stderr)
    if not report.ok_rows:
        raise SweepFailed(f"no successful rows in {', '.join(map(str, paths))}: every episode failed "
                          f"(see 'Failed episodes' in {args.out})")
    return 0


def cmd_evolve(args: argparse.Namespace) -> int:
    from .evolution import EvolutionConfig, run_evolution

    config = EvolutionConfig.from_yaml(Path(args.config))
    for name in ("workers", "backend", "address", "device", "dtype"):
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
    models = dict(args.model or [])
    run_demo(profile, Path(args.out), checkpoint, models, device=args.device, dtype=args.dtype)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import doctor

    return doctor(skip=tuple(args.skip or ()))


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("namm-suite")
    except metadata.PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    formatter = _HelpFormatter
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log at INFO level and show tracebacks")
    parser = argparse.ArgumentParser(prog="namm", description="Benchmark suite for learned KV-cache memory.",
                                     formatter_class=formatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level and show tracebacks")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, formatter_class=formatter, parents=[common], **kwargs)

    command("policies", help="list the memory policies").set_defaults(func=cmd_policies)

    gen = command("generate", help="answer one prompt under a memory policy")
    gen.add_argument("--model", default="smollm2-135m", help="embedded model name or local HF checkpoint dir")
    gen.add_argument("--prompt-file", default=None, help="UTF-8 text file holding the prompt")
    gen.add_argument("--prompt", default=None, help="the prompt text (instead of --prompt-file)")
    gen.add_argument("--max-new-tokens", type=_positive, default=64, help="answer tokens at most")
    gen.add_argument("--no-chat", action="store_true", help="do not wrap the prompt in the chat template")
    _add_memory_args(gen)
    add_device_args(gen)
    gen.set_defaults(func=cmd_generate)

    demo = command("demo", help="the cross-modal zero-shot transfer table (language, video, decision)")
    size = demo.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a ~2-minute smoke run (one episode per modality)")
    size.add_argument("--full", action="store_true", help="more episodes, seeds and budgets (takes longer)")
    demo.add_argument("--out", default="results", help="folder for transfer.md/.png and the resumable rows")
    demo.add_argument("--namm-checkpoint", default=None,
                      help="NAMM applied zero-shot to every modality (default: the shipped one)")
    demo.add_argument("--model", action="append", metavar="MODALITY=MODEL", type=_model_pair,
                      help="replace a modality's model, e.g. language=path/to/hf-model (repeatable)")
    add_device_args(demo)
    demo.set_defaults(func=cmd_demo)

    tasks = command("tasks", help="list the tasks (name, modality, metric, data source)")
    tasks.add_argument("--include-path", action="append", help="folder of user task YAML files")
    tasks.set_defaults(func=cmd_tasks)

    run = command("run", help="sweep adapter x task x policy x cache size x seed into a results file")
    run.add_argument("sweep", nargs="?", default=None,
                     help="a sweep YAML file (see configs/sweep_*.yaml): the whole grid, with several policy "
                     "variants; then only --out, --plan, --retry-errors and --include-path apply")
    run.add_argument("--plan", action="store_true",
                     help="print, per task and cell, the episodes done, failed and missing in the results file, "
                     "and run and write nothing (loads the model's adapter to make the episodes)")
    run.add_argument("--adapter", default="language", help="language, video, decision or decision-window")
    run.add_argument("--model", default=None,
                     help="embedded model name or local checkpoint folder (default: the adapter's embedded "
                     "model: smollm2-135m, tiny-video-llm, dt-hopper)")
    run.add_argument("--task", type=_csv(str, "a task name"), default=None,
                     help="task name(s), comma-separated (see `namm tasks`)")
    run.add_argument("--policy", type=_policy_specs, default=None,
                     help="policy name(s), comma-separated (see `namm policies`); NAME:KEY=VALUE,... for a "
                     "policy with options, e.g. h2o,namm:selection=threshold,label=namm-t")
    run.add_argument("--cache-size", type=_csv(_cache_size, "tokens per head or a percentage like 25%"),
                     default=[], help="tokens per KV head, or a share of each episode's context like 25%%, "
                     "comma-separated (needed by budgeted policies)")
    run.add_argument("--protocol", choices=["scheduled", "context", "query-aware"], default="scheduled",
                     help="scheduled: evict on the schedule through prompt and answer (NAMM paper); context: "
                     "compress the context, then read question and answer with no eviction (kvpress); "
                     "query-aware: the question ends the compressed part (SnapKV). See docs/protocols.md")
    run.add_argument("--evict", choices=["schedule", "once"], default="schedule",
                     help="with --protocol context/query-aware: evict on the schedule while reading the "
                     "compressed part, or only once at its end (kvpress)")
    run.add_argument("--no-share-prefix", action="store_true",
                     help="with --evict once: read each cell's prompt alone (for per-policy timings) instead of "
                     "reading each episode's compressed part once for all cells (same answers, far faster)")
    run.add_argument("--batch-size", type=_positive, default=1, metavar="N",
                     help="answer N episodes of a cell together, each with its own memory (the same rows as one "
                     "at a time, in less time; see docs/protocols.md); one-shot prefixes are then not shared "
                     "across cells. Language adapter only")
    run.add_argument("--max-new-tokens", type=_positive, default=None,
                     help="answer budget in tokens (default: each task's own, e.g. LongBench's per dataset)")
    run.add_argument("--chat-template", choices=["auto", "chat", "none"], default="auto",
                     help="auto: each task's choice (LongBench: none for few-shot and code); chat: always the "
                     "model's template; none: plain text")
    run.add_argument("--policy-option", type=_task_option, action="append", metavar="POLICY.FIELD=VALUE",
                     help="a policy's dataclass field, e.g. snapkv.window=64 or tova.head_average=true "
                     "(repeatable; see `namm policies`); recorded in every row")
    run.add_argument("--seed", type=_csv(int, "an integer seed"), default=[0], help="seeds, comma-separated")
    run.add_argument("--limit", type=_positive, default=None, help="episodes per task and seed (default: all)")
    run.add_argument("--length", type=_positive, default=1024, help="prompt tokens (synthetic) or window")
    run.add_argument("--update-every", type=_positive, default=64,
                     help="tokens between memory updates (a multiple of 16 for the NAMM)")
    run.add_argument("--task-option", type=_task_option, action="append", metavar="[TASK.]KEY=VALUE",
                     help="a task option, e.g. frames=16 or hopper.target_return=3600 (repeatable; see the "
                     "task's documentation); recorded in every row")
    run.add_argument("--retry-errors", action="store_true", help="run episodes that failed before again")
    _add_namm_args(run)
    run.add_argument("--namm-cap", action="store_true", help="also run the NAMM capped at each cache size")
    run.add_argument("--data-path", default=None, help="local data for loader tasks")
    run.add_argument("--include-path", action="append", help="folder of user task YAML files")
    run.add_argument("--out", default=None, help="results JSONL (appended; finished episodes are skipped)")
    add_device_args(run)
    run.set_defaults(func=cmd_run)

    report = command("report", help="markdown table + PNG of score vs cache size from results")
    report.add_argument("results", nargs="+", help="results JSONL file(s) of `namm run`")
    report.add_argument("--out", required=True, help="markdown file; figures are written beside it")
    report.add_argument("--title", default=None, help="report title (default: 'Score vs cache size')")
    report.add_argument("--axis", choices=["tokens", "fraction"], default="tokens",
                        help="figures' x axis: mean tokens kept per head, or the %% of the context kept")
    report.add_argument("--spread", choices=["se", "ci95"], default="se",
                        help="± in the tables: standard error, or the 95%% confidence interval (Student's t)")
    report.add_argument("--notes", default=None, metavar="FILE.md",
                        help="markdown appended after the tables (the written reading; kept apart so the report "
                        "is regenerated whole)")
    report.set_defaults(func=cmd_report)

    evolve = command("evolve", help="evolve a NAMM with CMA-ES (resumes from OUT/state.pkl)")
    evolve.add_argument("config", help="evolution YAML (see configs/)")
    evolve.add_argument("--out", required=True, help="run folder (state, log, checkpoints)")
    evolve.add_argument("--generations", type=_positive, default=None, help="stop after this many more")
    evolve.add_argument("--workers", type=_positive, default=None, help="parallel workers (default: config)")
    evolve.add_argument("--backend", choices=["local", "ray"], default=None, help="default: config")
    evolve.add_argument("--address", default=None, help="Ray cluster address (with --backend ray)")
    add_device_args(evolve, device=None, dtype=None)
    evolve.set_defaults(func=cmd_evolve)

    evo_report = command("evolution-report", help="fitness curve + table of an evolution run")
    evo_report.add_argument("run", help="the --out folder of `namm evolve`")
    evo_report.add_argument("--out", required=True, help="markdown file; the PNG is written beside it")
    evo_report.set_defaults(func=cmd_evolution_report)

    lm_eval = command("lm-eval", help="run lm-eval tasks through a memory policy")
    lm_eval.add_argument("--model-args", required=True,
                         help="e.g. pretrained=smollm2-135m,policy=h2o,cache_size=256,update_every=64")
    lm_eval.add_argument("--tasks", required=True, help="lm-eval task names, comma-separated")
    lm_eval.add_argument("--include-path", default=None, help="folder of extra lm-eval task YAML files")
    lm_eval.add_argument("--limit", type=_positive, default=None, help="examples per task (default: all)")
    lm_eval.set_defaults(func=cmd_lm_eval)

    doctor = command("doctor", help="check the installation (torch, transformers, model, MuJoCo, video)")
    doctor.add_argument("--skip", action="append", metavar="CHECK",
                        help="skip a check by name, e.g. --skip 'embedded model' (repeatable)")
    doctor.set_defaults(func=cmd_doctor)

    args = parser.parse_args(argv)
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return _run_command(args, verbose)


def _run_command(args: argparse.Namespace, verbose: bool) -> int:
    """Run the subcommand; errors become one line on stderr and an exit code (see the module docstring)."""
    from .results import ResultsError

    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"namm {args.command}: interrupted; finished rows are kept, rerun the same command to resume",
              file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001  (every error is one line; the traceback with -v)
        if verbose:
            import traceback

            traceback.print_exc()
        bad_input = isinstance(err, (KeyError, ValueError, OSError, ResultsError))
        message = " ".join(str(err).split()) or type(err).__name__
        if not bad_input and not isinstance(err, SweepFailed):
            message = f"{type(err).__name__}: {message} (rerun with -v for the traceback)"
        print(f"namm {args.command}: error: {message}", file=sys.stderr)
        return 2 if bad_input else 1


if __name__ == "__main__":
    sys.exit(main())
