"""Sweeps as YAML: ``namm run sweep.yaml`` runs a whole grid into one or more results files.

A sweep file is a mapping of :class:`~namm_suite.runner.SweepConfig` fields, plus:

- ``out``: the results JSONL (``namm run --out`` overrides it);
- ``protocols``: a list of protocols, one grid axis (instead of ``protocol``);
- ``runs``: a list of mappings, each overriding the top-level fields (its own tasks, lengths, ``out``...).

So the grid is runs × protocols × tasks × policies × cache sizes × seeds. ``policies`` entries are policy
specs (:class:`~namm_suite.policies.PolicySpec`): ``h2o``, ``"namm:checkpoint=checkpoints/namm_random"`` or
``{name: namm, label: v2, checkpoint: ...}``, so one file can hold several NAMM variants. A list field may
be given as one value (``tasks: passkey``). As on the command line, ``namm_checkpoint`` defaults to the
shipped NAMM and paths are relative to the current directory. Every error names the file and the field.

Example (``configs/sweep_passkey.yaml``)::

    adapter: language
    tasks: [passkey]
    length: 1024
    seeds: [0, 1]
    cache_sizes: [128, 256, 512]
    policies: [full, h2o, "namm:checkpoint=none", "namm:selection=threshold"]
    out: results/language_passkey.jsonl
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from .device import placement
from .registry import UnknownNameError
from .runner import SweepConfig, SweepSummary, run_sweep
from .shipped import default_namm

LIST_FIELDS = ("tasks", "policies", "seeds", "cache_sizes", "protocols")
EXTRA_FIELDS = ("out", "protocols", "runs")


@dataclass
class SweepRun:
    """One sweep of a sweep file and the results file it appends to."""

    config: SweepConfig
    out: Path


def load_sweep_file(path: Path, out: Path | None = None) -> list[SweepRun]:
    """The sweeps of the YAML file ``path`` (``out``: a results file for all of them, overriding the
    file's). Raises ``ValueError`` naming the file and field for anything unreadable or invalid."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read the sweep file: {' '.join(str(err).split())}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of sweep fields, got {type(data).__name__}")  # noqa: TRY004
    base = _checked(data, f"{path}", allow_runs=True)
    runs = base.pop("runs", None)
    if runs is None:
        entries = [(f"{path}", base)]
    elif not isinstance(runs, list) or not runs or not all(isinstance(run, dict) for run in runs):
        raise ValueError(f"{path}: runs: expected a non-empty list of mappings, got {runs!r}")
    else:
        entries = [(f"{path}: runs[{i}]", {**base, **_checked(run, f"{path}: runs[{i}]")})
                   for i, run in enumerate(runs)]
    sweeps = []
    for where, fields in entries:
        target = out or fields.pop("out", None)
        fields.pop("out", None)
        if target is None:
            raise ValueError(f"{where}: no results file: add out: FILE.jsonl or give --out")
        protocols = fields.pop("protocols", None)
        if protocols is not None and "protocol" in fields:
            raise ValueError(f"{where}: give protocol or protocols, not both")
        for protocol in protocols or [fields.get("protocol", "scheduled")]:
            sweeps.append(SweepRun(_config({**fields, "protocol": protocol}, where), Path(str(target))))
    return sweeps


def _checked(data: dict[str, Any], where: str, allow_runs: bool = False) -> dict[str, Any]:
    """``data`` with unknown keys refused (with a "did you mean") and list fields given as one value
    wrapped in a list."""
    known = {f.name for f in dataclasses.fields(SweepConfig)} | set(EXTRA_FIELDS)
    if not allow_runs:
        known.discard("runs")
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{where}: unknown field {key!r}{hint}; valid: {', '.join(sorted(known))}")
    return {key: [value] if key in LIST_FIELDS and not isinstance(value, list) else value
            for key, value in data.items()}


def _config(fields: dict[str, Any], where: str) -> SweepConfig:
    fields = {"namm_checkpoint": default_namm(), **fields}
    if str(fields["namm_checkpoint"]).lower() in ("none", "zero", ""):
        fields["namm_checkpoint"] = None
    missing = [name for name in ("tasks", "policies") if name not in fields]
    if missing:
        raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
    try:
        return SweepConfig(**fields)
    except (TypeError, ValueError, OSError, UnknownNameError) as err:  # OSError: a missing checkpoint
        raise ValueError(f"{where}: {' '.join(str(err).split())}") from None


def sweeps_with_adapters(sweeps: list[SweepRun]) -> Iterator[tuple[SweepRun, Any]]:
    """Each sweep with its adapter, in order: one adapter per (adapter, model, device, dtype) serves all the
    sweeps that share it (made when the first of them comes)."""
    from .adapters import base as adapters

    loaded: dict[tuple[str, str, str, str], Any] = {}
    for sweep in sweeps:
        config = sweep.config
        where = (config.adapter, config.model, config.device, config.dtype)
        if where not in loaded:
            loaded[where] = adapters.create_adapter(config.adapter, config.model,
                                                    **placement(config.device, config.dtype))
        yield sweep, loaded[where]


def run_sweep_file(sweeps: list[SweepRun], console: Console | None = None,
                   retry_errors: bool = False) -> list[SweepSummary]:
    """Run every sweep in order (each resumable, as :func:`run_sweep`), sharing adapters
    (:func:`sweeps_with_adapters`)."""
    return [run_sweep(sweep.config, sweep.out, adapter=adapter, console=console, retry_errors=retry_errors)
            for sweep, adapter in sweeps_with_adapters(sweeps)]
