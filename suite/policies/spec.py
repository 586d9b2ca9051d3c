"""A policy with its options as data: ``PolicySpec`` (name, options, label).

A spec is written as a string, ``namm:checkpoint=PATH,selection=threshold`` (values read as YAML scalars,
``label=...`` names the variant in reports), or as a YAML mapping, ``{name: namm, label: namm-v2,
options: {selection: threshold}}`` (option keys may also sit beside ``name``). This module imports no torch,
so reports and argument parsing can use it; :meth:`PolicySpec.policy_class` and :meth:`PolicySpec.create`
look the policy up in the registry.

Each policy class declares its budget rule (:data:`BUDGET_RULES`): ``required`` (a cache size is needed),
``cap`` (the policy sizes its own cache; a cache size, when given, caps it: the NAMM) or ``none`` (no
cache size applies: the full cache), and ``holds_memory`` (False for the full cache, which evicts nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ..manager import MemoryConfig, MemoryManager
    from .base import MemoryPolicy

BudgetRule = Literal["required", "cap", "none"]
BUDGET_RULES: tuple[BudgetRule, ...] = ("required", "cap", "none")

#: the full-cache reference policy every report compares with (registered under this name in ``full.py``)
REFERENCE = "full"
#: the Neural Attention Memory Model (registered under this name in ``namm.py``)
NAMM = "namm"
#: learned policies, listed first and drawn bold in reports
LEARNED = (NAMM,)


def is_reference(label: str) -> bool:
    """Whether a report label is the full-cache reference."""
    return label == REFERENCE


def is_learned(label: str) -> bool:
    """Whether a report label names a learned policy (any variant: ``namm-threshold [ckpt]``)."""
    return label.startswith(LEARNED)


def default_label(name: str, options: Mapping[str, Any]) -> str:
    """A policy's name in tables: the name, ``-threshold`` for a threshold selection rule, and for policies
    with a checkpoint option the checkpoint's file name (``θ=0`` without one): ``namm-threshold [v2]``."""
    label = f"{name}-threshold" if options.get("selection") == "threshold" else name
    if "checkpoint" not in options:
        return label
    checkpoint = options["checkpoint"]
    return f"{label} [{Path(checkpoint).name if checkpoint else 'θ=0'}]"


def split_specs(text: str) -> list[str]:
    """A comma-separated list of policy specs, split where a new policy starts: a piece with ``=`` and no
    ``:`` before it continues the previous spec's options (``"full,namm:selection=threshold,label=t,h2o"``
    -> ``["full", "namm:selection=threshold,label=t", "h2o"]``)."""
    specs: list[str] = []
    for piece in filter(None, (part.strip() for part in text.split(","))):
        continues = "=" in piece and ":" not in piece.partition("=")[0]
        if continues and specs:
            specs[-1] += f",{piece}"
        else:
            specs.append(piece)
    return specs


def _scalar(text: str) -> Any:
    """A string option value read as a YAML scalar (``64`` -> 64, ``true`` -> True, ``none`` -> None)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and value.lower() in ("none", "null"):
        return None
    return value if value is None or isinstance(value, (bool, int, float, str)) else text


@dataclass(frozen=True)
class PolicySpec:
    """One memory policy with options.

    Attributes:
        name: registered policy name (``namm policies`` lists them).
        options: the policy's dataclass fields, e.g. ``{"selection": "threshold"}``.
        label: the variant's name in progress lines and reports; None for the default (:func:`default_label`).
    """

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    label: str | None = None

    @classmethod
    def parse(cls, value: str | Mapping[str, Any] | PolicySpec, where: str = "policy") -> PolicySpec:
        """A spec from a string, a mapping or a spec; ``where`` names the field in error messages."""
        if isinstance(value, PolicySpec):
            return value
        if isinstance(value, Mapping):
            return cls._from_mapping(value, where)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: expected a policy name or NAME:KEY=VALUE,..., got {value!r}")
        name, _, rest = value.strip().partition(":")
        if "=" in name:
            raise ValueError(f"{where}: {value!r}: options follow the policy name and a colon, e.g. "
                             "namm:selection=threshold")
        options: dict[str, Any] = {}
        for pair in filter(None, (part.strip() for part in rest.split(","))):
            key, sep, raw = pair.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"{where}: expected KEY=VALUE after {name.strip()!r}:, got {pair!r} in {value!r}")
            options[key.strip()] = _scalar(raw.strip())
        label = options.pop("label", None)
        return cls(name.strip(), options, None if label is None else str(label))

    @classmethod
    def _from_mapping(cls, value: Mapping[str, Any], where: str) -> PolicySpec:
        if not isinstance(value.get("name"), str):
            raise ValueError(f"{where}: a policy mapping needs name: POLICY, got {dict(value)!r}")  # noqa: TRY004
        nested = value.get("options") or {}
        if not isinstance(nested, Mapping):
            raise ValueError(f"{where}.options: expected a mapping of policy fields, got {nested!r}")  # noqa: TRY004
        flat = {k: v for k, v in value.items() if k not in ("name", "options", "label")}
        label = value.get("label")
        return cls(value["name"], {**flat, **nested}, None if label is None else str(label))

    def policy_class(self) -> type[MemoryPolicy]:
        """The registered class (an unknown name raises with the valid names)."""
        from .base import POLICIES

        return POLICIES.get(self.name)

    def create(self, **defaults: Any) -> MemoryPolicy:
        """The policy, with ``defaults`` for the fields the spec's options leave unset; a default whose name
        is not a field of the policy is dropped (so a sweep can offer ``seed`` or ``checkpoint`` to all)."""
        return self.policy_class()(**self.resolved(defaults))

    def resolved(self, defaults: Mapping[str, Any]) -> dict[str, Any]:
        """The options with ``defaults`` filled in where the policy has such a field and the spec none; the
        defaults come first, in their order."""
        import dataclasses

        fields = {f.name for f in dataclasses.fields(self.policy_class()) if f.init}
        own = {key: value for key, value in defaults.items() if key in fields}
        return {**own, **self.options}

    def budget_for(self, cache_size: int | None) -> int | None:
        """The manager budget for ``cache_size`` under the policy's budget rule (None when none applies)."""
        return None if self.policy_class().budget_rule == "none" else cache_size

    def build_manager(self, memory: MemoryConfig, **defaults: Any) -> MemoryManager:
        """A manager running this policy (``defaults`` as in :meth:`create`) on ``memory``'s schedule, with
        its budget (tokens per head, or a share) only where the policy's budget rule takes one."""
        from ..manager import MemoryManager

        policy = self.create(**defaults)
        policy.check_update_every(memory.update_every)
        if self.policy_class().budget_rule == "none":
            memory = replace(memory, budget=None, budget_fraction=None)
        return MemoryManager(policy, memory)

    def title(self, options: Mapping[str, Any] | None = None) -> str:
        """The label, or :func:`default_label` of ``options`` (default: the spec's own)."""
        return self.label or default_label(self.name, self.options if options is None else options)

    def __hash__(self) -> int:  # options is a dict: hash the written form
        return hash(str(self))

    def __str__(self) -> str:
        pairs = [f"{key}={value}" for key, value in self.options.items()]
        if self.label:
            pairs.append(f"label={self.label}")
        return f"{self.name}:{','.join(pairs)}" if pairs else self.name
