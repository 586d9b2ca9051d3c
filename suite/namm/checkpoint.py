"""NAMM checkpoints: ``<path>.safetensors`` (θ, μ, v) plus a ``<path>.json`` sidecar
(docs/namm-spec.md §7).

The sidecar holds the hyper-parameters, the statistics count, the sha256 of the tensor file (so a
mismatched or truncated pair is detected) and free-form provenance (curriculum, generation, fitness, git
commit, ...). Both files are written atomically (temporary file, fsync, ``os.replace``); the sidecar is
written last, so a checkpoint whose sidecar exists is complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ..atomic import write_bytes_atomic
from .features import GAMMA, HOP, N_BINS, N_FFT, N_RECENCY, RECENCY_BASE
from .params import D_ATTN, D_FEATURE, PARAM_LAYOUT, BamParams
from .selection import SELECTIONS

SPEC_VERSION = "1"
FORMAT = "namm-checkpoint"
#: hyper-parameters that describe a run, not the NAMM itself; never compared on load.
RUN_SETTINGS = frozenset({"update_every"})
#: hyper-parameters added after the first checkpoints were written, with the value those checkpoints ran
#: with: a sidecar without one of them loads with this value.
LATER_HPARAMS = {"kernel": 1}
_STAT_TENSORS = (("mu", (N_BINS,)), ("var", (N_BINS,)))


@dataclass(frozen=True)
class NammHyperParams:
    """Hyper-parameters a NAMM checkpoint was made with (defaults: docs/namm-spec.md, paper setting).

    Attributes:
        spec_version: version of docs/namm-spec.md the implementation follows.
        n_fft, hop: STFT window and hop (queries).
        gamma: per-query EMA coefficient.
        recency_base, n_recency: recency encoding ω_i = base^(−i/n), i < n.
        d_feature: width of φ (2·n_recency + n_fft/2 + 1).
        d_attn: width of the BAM's query/key/value.
        update_every: tokens between NAMM updates (a run setting: a positive multiple of ``hop``).
        selection: eviction rule the parameters were evolved with, "kappa" or "threshold".
        kernel: odd width of the max-pooling of scores over neighbouring cache slots the parameters were
            evolved or fitted with (1: none, the reference; a deviation, docs/namm-spec.md).
    """

    spec_version: str = SPEC_VERSION
    n_fft: int = N_FFT
    hop: int = HOP
    gamma: float = GAMMA
    recency_base: float = RECENCY_BASE
    n_recency: int = N_RECENCY
    d_feature: int = D_FEATURE
    d_attn: int = D_ATTN
    update_every: int = 512
    selection: str = "kappa"
    kernel: int = 1

    def __post_init__(self) -> None:
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {self.selection!r}")
        check_kernel(self.kernel)
        if self.hop <= 0 or self.update_every <= 0 or self.update_every % self.hop:
            raise ValueError(
                f"update_every must be a positive multiple of hop={self.hop}, got {self.update_every}"
            )
        if self.d_feature != 2 * self.n_recency + self.n_fft // 2 + 1:
            raise ValueError(
                f"d_feature={self.d_feature} must equal 2·n_recency + n_fft/2 + 1 = "
                f"{2 * self.n_recency + self.n_fft // 2 + 1}"
            )


def check_kernel(kernel: int, owner: str = "kernel") -> None:
    """Raise ValueError unless ``kernel`` is a positive odd int (a score-pooling width)."""
    if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"{owner} must be a positive odd number (1: no pooling), got {kernel!r}")


class NammCheckpoint(NamedTuple):
    """What :func:`load_namm` returns (a tuple, so it unpacks positionally)."""

    params: BamParams
    mu: torch.Tensor
    var: torch.Tensor
    count: int
    hparams: NammHyperParams
    provenance: dict[str, Any]


def checkpoint_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(<base>.safetensors, <base>.json)`` for ``path`` given with or without either suffix, or for the one
    checkpoint in ``path`` when it is a folder (:func:`only_checkpoint`)."""
    base = Path(path)
    if base.is_dir():
        base = only_checkpoint(base)
    if base.suffix in (".safetensors", ".json"):
        base = base.with_suffix("")
    return base.with_name(base.name + ".safetensors"), base.with_name(base.name + ".json")


def only_checkpoint(folder: Path) -> Path:
    """The base path of the one checkpoint (``NAME.safetensors`` + ``NAME.json``) in ``folder``; a folder
    with none or several raises :class:`FileNotFoundError` saying what is expected."""
    found = sorted(p.with_suffix("") for p in folder.glob("*.safetensors") if p.with_suffix(".json").is_file())
    if len(found) != 1:
        names = f" ({', '.join(p.name for p in found)})" if found else ""
        raise FileNotFoundError(f"{folder} is a folder holding {len(found)} NAMM checkpoints{names}; pass a "
                                f"folder holding one, or a checkpoint's path without suffix ({folder}/NAME for "
                                "NAME.safetensors + NAME.json)")
    return found[0]


def _stat_tensor(name: str, value: torch.Tensor) -> torch.Tensor:
    value = torch.as_tensor(value)
    if value.shape != (N_BINS,) or not torch.is_floating_point(value):
        raise ValueError(
            f"{name} must be a float tensor of shape ({N_BINS},), got {tuple(value.shape)} {value.dtype}"
        )
    return value.detach().to("cpu", torch.float32).contiguous()


def save_namm(
    path: str | os.PathLike[str],
    params: BamParams,
    mu: torch.Tensor,
    var: torch.Tensor,
    count: int,
    hparams: NammHyperParams,
    provenance: dict[str, Any],
) -> tuple[Path, Path]:
    """Write a checkpoint; returns the paths of the tensor file and the sidecar.

    ``provenance`` must be JSON-serialisable (e.g. curriculum, generation, fitness, git commit).
    """
    tensors_path, sidecar_path = checkpoint_paths(path)
    tensors = {
        name: getattr(params, name).detach().to("cpu", torch.float32).contiguous() for name, _ in PARAM_LAYOUT
    }
    tensors["mu"], tensors["var"] = _stat_tensor("mu", mu), _stat_tensor("var", var)
    blob = save_safetensors(tensors, metadata={"format": FORMAT, "spec_version": hparams.spec_version})
    sidecar = {
        "format": FORMAT,
        "hparams": dataclasses.asdict(hparams),
        "stats_count": int(count),
        "tensors_file": tensors_path.name,
        "tensors_sha256": hashlib.sha256(blob).hexdigest(),
        "provenance": provenance,
    }
    try:
        text = json.dumps(sidecar, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"provenance must be JSON-serialisable: {err}") from err
    tensors_path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(tensors_path, blob)
    write_bytes_atomic(sidecar_path, (text + "\n").encode())
    return tensors_path, sidecar_path


def _read_sidecar(sidecar_path: Path) -> dict[str, Any]:
    if not sidecar_path.is_file():
        raise FileNotFoundError(f"NAMM checkpoint sidecar not found: {sidecar_path}")
    try:
        meta = json.loads(sidecar_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{sidecar_path}: not valid JSON (truncated?): {err}") from err
    missing = [
        k
        for k in ("format", "hparams", "stats_count", "tensors_sha256", "provenance")
        if not isinstance(meta, dict) or k not in meta
    ]
    if missing:
        raise ValueError(f"{sidecar_path}: not a NAMM checkpoint sidecar, missing keys {missing}")
    if meta["format"] != FORMAT:
        raise ValueError(f"{sidecar_path}: format is {meta['format']!r}, expected {FORMAT!r}")
    count = meta["stats_count"]
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError(f"{sidecar_path}: stats_count must be an integer >= 0, got {count!r}")
    if not isinstance(meta["provenance"], dict):  # a corrupt file is a ValueError (load_namm's contract)
        raise ValueError(  # noqa: TRY004
            f"{sidecar_path}: provenance must be an object, got {type(meta['provenance']).__name__}")
    return meta


def _parse_hparams(raw: Any, sidecar_path: Path) -> NammHyperParams:
    names = {f.name for f in dataclasses.fields(NammHyperParams)}
    if isinstance(raw, dict):
        raw = {**LATER_HPARAMS, **raw}
    if not isinstance(raw, dict) or set(raw) != names:
        got = set(raw) if isinstance(raw, dict) else set()
        raise ValueError(
            f"{sidecar_path}: hparams have unknown fields {sorted(got - names)} and lack "
            f"{sorted(names - got)}"
        )
    for f in dataclasses.fields(NammHyperParams):
        value, kind = raw[f.name], type(f.default)
        if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
            raise ValueError(  # noqa: TRY004  (a corrupt file is a ValueError, as everywhere in load_namm)
                f"{sidecar_path}: hparams field {f.name!r} must be {kind.__name__}, got {value!r}")
    try:
        return NammHyperParams(**raw)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{sidecar_path}: invalid hparams: {err}") from err


def check_hparams(
    found: NammHyperParams, expected: NammHyperParams, source: str = "checkpoint", ignore: Iterable[str] = ()
) -> None:
    """Raise ValueError naming every field (except run settings and ``ignore``) that differs."""
    skip = RUN_SETTINGS | set(ignore)
    diffs = [
        f"{f.name!r} is {getattr(found, f.name)!r} in the checkpoint but {getattr(expected, f.name)!r} "
        "was expected"
        for f in dataclasses.fields(NammHyperParams)
        if f.name not in skip and getattr(found, f.name) != getattr(expected, f.name)
    ]
    if diffs:
        raise ValueError(f"{source}: hyper-parameter mismatch: " + "; ".join(diffs))


def load_namm(
    path: str | os.PathLike[str],
    expected: NammHyperParams | None = None,
    *,
    ignore: Iterable[str] = (),
) -> NammCheckpoint:
    """Read a checkpoint written by :func:`save_namm`.

    Args:
        path: base path, with or without ``.safetensors`` / ``.json``.
        expected: hyper-parameters the caller runs with; any differing field other than ``update_every``
            (a run setting) and those named in ``ignore`` raises ValueError naming the field and both
            values. None skips the check.

    Raises:
        FileNotFoundError: a file of the pair is missing.
        ValueError: a file is truncated or corrupt, the pair does not match, or a tensor is missing or
            has the wrong shape or dtype (the message names the file and tensor).
    """
    tensors_path, sidecar_path = checkpoint_paths(path)
    meta = _read_sidecar(sidecar_path)
    hparams = _parse_hparams(meta["hparams"], sidecar_path)
    if expected is not None:
        check_hparams(hparams, expected, str(sidecar_path), ignore)
    if not tensors_path.is_file():
        raise FileNotFoundError(f"NAMM checkpoint tensors not found: {tensors_path}")
    blob = tensors_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != meta["tensors_sha256"]:
        raise ValueError(
            f"{tensors_path}: contents do not match the sha256 recorded in {sidecar_path} "
            "(truncated, or the two files come from different saves)"
        )
    try:
        tensors = load_safetensors(blob)
    except Exception as err:  # safetensors raises its own error type for corrupt headers
        raise ValueError(f"{tensors_path}: cannot read safetensors data: {err}") from err
    expected_shapes = dict(PARAM_LAYOUT) | dict(_STAT_TENSORS)
    for name, shape in expected_shapes.items():
        if name not in tensors:
            raise ValueError(f"{tensors_path}: tensor {name!r} is missing")
        t = tensors[name]
        if tuple(t.shape) != shape or t.dtype != torch.float32:
            raise ValueError(
                f"{tensors_path}: tensor {name!r} is {t.dtype} {tuple(t.shape)}, "
                f"expected torch.float32 {shape}"
            )
        if not torch.isfinite(t).all():
            raise ValueError(f"{tensors_path}: tensor {name!r} holds NaN or infinite values")
    if (tensors["var"] < 0).any():
        raise ValueError(f"{tensors_path}: tensor 'var' holds negative variances")
    extra = sorted(set(tensors) - set(expected_shapes))
    if extra:
        raise ValueError(f"{tensors_path}: unexpected tensors {extra}")
    params = BamParams()
    with torch.no_grad():
        for name, _ in PARAM_LAYOUT:
            getattr(params, name).copy_(tensors[name])
    return NammCheckpoint(
        params, tensors["mu"], tensors["var"], int(meta["stats_count"]), hparams, dict(meta["provenance"])
    )
