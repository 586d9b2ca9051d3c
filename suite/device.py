"""Where a model runs: ``--device {auto,cpu,cuda}`` and ``--dtype {fp32,bf16,fp16}``, shared by every command
that loads a model (``namm run``, ``generate``, ``demo``, ``evolve``; the lm-eval bridge takes ``device=`` and
``dtype=`` model_args). torch is imported on first use, so that ``namm --help`` stays instant."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}  # --dtype name -> torch attribute


def resolve_device(name: str) -> str:
    """``"cpu"`` or ``"cuda"`` for a ``--device`` value; ``auto`` is ``cuda`` when CUDA is available.

    Raises ValueError for an unknown name, or ``cuda`` on a machine without CUDA."""
    import torch

    if name not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device 'cuda' is not available (torch {torch.__version__}, "
                         f"CUDA build {torch.version.cuda or 'none'}); use --device cpu or auto")
    return name


def resolve_dtype(name: str) -> torch.dtype:
    """The torch dtype of a ``--dtype`` value; ValueError naming the valid ones otherwise."""
    import torch

    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return getattr(torch, DTYPES[name])


def placement(device: str = "auto", dtype: str = "fp32") -> dict[str, Any]:
    """Keyword options for the adapters' loaders, e.g. ``{"device": "cuda", "dtype": torch.bfloat16}``;
    empty on the CPU in float32 (every adapter's default)."""
    resolved, torch_dtype = resolve_device(device), resolve_dtype(dtype)
    if resolved == "cpu" and dtype == "fp32":
        return {}
    return {"device": resolved, "dtype": torch_dtype}


def add_device_args(parser: argparse.ArgumentParser, device: str | None = "auto", dtype: str | None = "fp32") -> None:
    """Add ``--device`` and ``--dtype`` to a subcommand (defaults ``None``: a config file decides)."""
    parser.add_argument("--device", choices=DEVICES, default=device,
                        help="where the model runs: auto = cuda when available, else cpu")
    parser.add_argument("--dtype", choices=list(DTYPES), default=dtype,
                        help="model weights and activations (attention probabilities are always summed in fp32)")
