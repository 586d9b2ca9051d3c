"""Typed configuration of a NAMM evolution run (YAML overrides the defaults; every field validated)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..device import placement
from ..manager import PROTOCOLS
from ..namm.features import GAMMA


@dataclass
class Stage:
    """One curriculum stage: its tasks (added to the previous stages' tasks) and its length in generations."""

    name: str
    tasks: list[str]
    generations: int


@dataclass
class EvolutionConfig:
    """A NAMM evolution (docs/namm-spec.md §8, scaled to the machine).

    Attributes:
        stages: curriculum; stage k trains on the union of the tasks of stages 1..k.
        adapter, model, length, update_every, task_options: how episodes are built and run.
        population: λ (spec 32); parents: μ (spec λ/2); sigma0: initial step size (spec 0.065).
        episodes_per_task: prompts sampled per task per generation (spec 64), without replacement from a
            pool of ``pool_size`` episodes generated from ``train_seed``.
        eval_every: evaluate the mean m on every pool prompt every this many generations (spec 10).
        separable: diagonal CMA-ES (default; O(d) state), else full covariance.
        seed: seed of the CMA-ES random stream and of episode sampling (spec 1337).
        workers: fitness-evaluation processes (1 = in-process); backend "local" or "ray".
        selection: NAMM eviction rule used during evolution.
        kernel: the NAMM's score-pooling width during evolution (``NammPolicy.kernel``; 1: none, the spec).
        gamma: the features' per-query EMA coefficient during evolution (``NammPolicy.gamma``; 0.99, the
            spec's). A checkpoint given as ``init`` should have been made under the same γ.
        cache_penalty: p in [0, 1); fitness is multiplied by (1 − p × kept fraction). 0 = the spec's raw
            fitness; > 0 is a documented deviation that asks for smaller caches.
        device / dtype: where each worker's model runs (see :mod:`namm_suite.device`).
        fitness: "likelihood" (dense, teacher-forced answer likelihood; default) or "metric" (task metric of
            the greedy answer, the spec's).
        budget_fraction: cap the NAMM at this fraction of each episode's prompt tokens per head (None: no
            cap, the NAMM sizes its own cache). Trains the scorer's ranking at a fixed memory.
        init: a NAMM checkpoint whose θ is the initial search mean m0 (and whose μ, v are used instead of
            measuring them); None starts from θ = 0 as the spec does.
        protocol / evict: how each episode's prompt is read (``MemoryConfig.protocol`` / ``evict``; see
            docs/protocols.md): the NAMM paper's ``scheduled`` by default.
        batch_members: population members evaluated together, one batch row each with its own θ, on the
            same episodes (``fitness: likelihood``; 1 = one member at a time). Pays on a GPU; on a CPU,
            prefill is compute-bound and batching gains little (benchmarks/fitness_throughput.py).
    """

    stages: list[Stage]
    adapter: str = "language"
    model: str = "smollm2-135m"
    length: int = 512
    update_every: int = 64
    task_options: dict[str, Any] = field(default_factory=dict)
    population: int = 32
    parents: int | None = None
    sigma0: float = 0.065
    episodes_per_task: int = 64
    pool_size: int = 64
    train_seed: int = 1000
    eval_every: int = 10
    separable: bool = True
    seed: int = 1337
    workers: int = 1
    backend: str = "local"
    address: str | None = None
    selection: str = "kappa"
    kernel: int = 1
    gamma: float = GAMMA
    cache_penalty: float = 0.0
    device: str = "auto"
    dtype: str = "fp32"
    fitness: str = "likelihood"
    budget_fraction: float | None = None
    init: str | None = None
    batch_members: int = 1
    protocol: str = "scheduled"
    evict: str = "schedule"

    def __post_init__(self) -> None:
        if not isinstance(self.stages, list) or not all(isinstance(s, (Stage, dict)) for s in self.stages):
            raise ValueError(f"evolution config: stages must be a list of mappings, got {self.stages!r}")
        self.stages = [s if isinstance(s, Stage) else Stage(**s) for s in self.stages]
        if not self.stages:
            raise ValueError("evolution config: 'stages' must list at least one stage")
        for stage in self.stages:
            _check_types(stage, f"stage {stage.name!r}")
            if not all(isinstance(t, str) for t in stage.tasks):
                raise ValueError(f"evolution config: stage {stage.name!r}: tasks must be names, got {stage.tasks!r}")
            if stage.generations <= 0 or not stage.tasks:
                raise ValueError(f"evolution config: stage {stage.name!r} needs tasks and generations > 0")
        _check_types(self, "evolution config")
        checks = {
            "population": self.population >= 2, "sigma0": self.sigma0 > 0,
            "episodes_per_task": 0 < self.episodes_per_task <= self.pool_size,
            "eval_every": self.eval_every > 0, "workers": self.workers >= 1,
            "backend": self.backend in ("local", "ray"),
            "update_every": self.update_every > 0 and self.update_every % 16 == 0, "length": self.length > 0,
            "pool_size": self.pool_size > 0, "selection": self.selection in ("kappa", "threshold"),
            "kernel": self.kernel >= 1 and self.kernel % 2 == 1, "gamma": 0 < self.gamma < 1,
            "cache_penalty": 0 <= self.cache_penalty < 1,
            "parents": self.parents is None or 0 < self.parents <= self.population,
            "fitness": self.fitness in ("likelihood", "metric"),
            "budget_fraction": self.budget_fraction is None or 0 < self.budget_fraction <= 1,
            "batch_members": self.batch_members >= 1,
            "protocol": self.protocol in PROTOCOLS, "evict": self.evict in ("schedule", "once"),
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"evolution config: invalid {name} = {getattr(self, name)!r}")
        try:
            placement(self.device, self.dtype)
        except ValueError as error:
            raise ValueError(f"evolution config: {error}") from None

    @classmethod
    def from_yaml(cls, path: Path) -> EvolutionConfig:
        """Load and validate a YAML config; unknown keys are named in the error."""
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ValueError(f"{path}: cannot read evolution config: {err}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of config fields, got {type(data).__name__}")  # noqa: TRY004
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown field(s) {unknown}; valid: {sorted(known)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from None

    def tasks_of(self, stage_index: int) -> list[str]:
        """Union of the tasks of stages 0..stage_index, in order of first appearance."""
        seen: list[str] = []
        for stage in self.stages[: stage_index + 1]:
            seen += [t for t in stage.tasks if t not in seen]
        return seen

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_SCALARS: dict[str, type | tuple[type, ...]] = {"int": int, "float": (int, float), "bool": bool, "str": str}


def _check_types(obj: Any, where: str) -> None:
    """Raise ValueError naming the field whose value does not have its annotated scalar type (YAML gives
    strings, lists and mappings where numbers are expected; ``bool`` is not accepted as a number)."""
    for f in fields(obj):
        value, kind = getattr(obj, f.name), str(f.type).replace(" | None", "")
        if value is None and "None" in str(f.type):
            continue
        expected = _SCALARS.get(kind) or {"list[str]": list, "list[Stage]": list, "dict[str, Any]": dict}.get(kind)
        if expected is None:
            continue
        if not isinstance(value, expected) or (kind != "bool" and isinstance(value, bool)):
            raise ValueError(f"{where}: {f.name} must be {kind}, got {value!r}")
