"""The BAM scorer's parameters θ (docs/namm-spec.md §6) as named tensors and as one flat float32 vector.

The flat vector is what CMA-ES evolves; its order is fixed by :data:`PARAM_LAYOUT` and documented in the
spec: weights are stored (in, out) row-major and applied as ``y = x @ W + b``.

    offsets      content
    0–2399       W_a [25, 96]: entry (i, o) at i·96 + o
    2400–2495    b_a [96]
    2496–4095    W_b [32, 50]: entry (i, o) at 2496 + i·50 + o
    4096–4145    b_b [50]
    4146–4170    w_c [25]
    4171         b_c (scalar)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

D_FEATURE = 25  # φ: 8 recency dims + 17 spectral bins
D_ATTN = 32  # width of the BAM's query, key and value
D_QKV = 3 * D_ATTN  # 96
D_OUT = 2 * D_FEATURE  # 50: additive term R and multiplicative term M

#: (name, shape) of every parameter tensor, in flat-vector order.
PARAM_LAYOUT: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("W_a", (D_FEATURE, D_QKV)),
    ("b_a", (D_QKV,)),
    ("W_b", (D_ATTN, D_OUT)),
    ("b_b", (D_OUT,)),
    ("w_c", (D_FEATURE,)),
    ("b_c", ()),
)


def _offsets() -> dict[str, tuple[int, int]]:
    offsets, start = {}, 0
    for name, shape in PARAM_LAYOUT:
        end = start + math.prod(shape)
        offsets[name] = (start, end)
        start = end
    return offsets


#: name -> (start, end) slice of the flat vector.
PARAM_OFFSETS: dict[str, tuple[int, int]] = _offsets()
NUM_PARAMS = 4172
assert PARAM_OFFSETS["b_c"][1] == NUM_PARAMS, "PARAM_LAYOUT disagrees with docs/namm-spec.md §6"


class BamParams(nn.Module):
    """θ of the BAM scorer: ``W_a [25,96]``, ``b_a [96]``, ``W_b [32,50]``, ``b_b [50]``, ``w_c [25]``,
    ``b_c []``, all float32 and zero-initialised (θ = 0 scores every token exactly 0, docs/namm-spec.md §6).

    The parameters are evolved, never trained, so they do not require gradients.

    ``rows`` R > 0 holds one θ per batch row (population members evaluated in one batched pass): every
    tensor gets leading dims that broadcast against the scorer's ``[B, H, N, *]`` inputs with B = R
    (``W_a [R, 1, 25, 96]``, ``b_a [R, 1, 1, 96]``, ``w_c [R, 1, 1, 25]``, ``b_c [R, 1, 1]``); load them
    with :meth:`from_vectors`.
    """

    W_a: nn.Parameter
    b_a: nn.Parameter
    W_b: nn.Parameter
    b_b: nn.Parameter
    w_c: nn.Parameter
    b_c: nn.Parameter

    def __init__(self, rows: int | None = None) -> None:
        super().__init__()
        self.rows = rows
        for name, shape in PARAM_LAYOUT:
            self.register_parameter(name, nn.Parameter(torch.zeros(self._shape(shape)), requires_grad=False))

    def _shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """A parameter's stored shape: as in :data:`PARAM_LAYOUT`, or with per-row broadcast dims."""
        if self.rows is None:
            return shape
        return (self.rows, 1, *shape) if len(shape) == 2 else (self.rows, 1, 1, *shape)

    def to_vector(self) -> torch.Tensor:
        """Flat float32 ``[4172]`` copy of θ on the CPU, in :data:`PARAM_LAYOUT` order (``[R, 4172]`` with
        ``rows``)."""
        if self.rows is not None:
            return torch.cat([getattr(self, name).detach().reshape(self.rows, -1).float().cpu()
                              for name, _ in PARAM_LAYOUT], dim=1)
        parts = [getattr(self, name).detach().reshape(-1).float().cpu() for name, _ in PARAM_LAYOUT]
        return torch.cat(parts)

    @torch.no_grad()
    def from_vector(self, vec: torch.Tensor | np.ndarray | Any) -> BamParams:
        """Load θ from a flat vector of 4172 floats (any float dtype; stored as float32). Returns self.

        Raises:
            ValueError: the vector is not 1-D, has the wrong size, is not floating point, or is not finite.
        """
        if self.rows is not None:
            raise ValueError(f"these parameters hold {self.rows} rows: load them with from_vectors")
        vec = torch.as_tensor(vec)
        if vec.ndim != 1 or vec.numel() != NUM_PARAMS or not torch.is_floating_point(vec):
            raise ValueError(
                f"expected a 1-D floating-point vector of {NUM_PARAMS} values (float32), "
                f"got shape {tuple(vec.shape)} and dtype {vec.dtype}"
            )
        if not torch.isfinite(vec).all():
            bad = torch.nonzero(~torch.isfinite(vec)).flatten()[:5].tolist()
            raise ValueError(f"θ must be finite; non-finite values at offsets {bad}")
        vec = vec.detach().to(torch.float32)
        for name, shape in PARAM_LAYOUT:
            start, end = PARAM_OFFSETS[name]
            param = getattr(self, name)
            param.copy_(vec[start:end].reshape(shape).to(param.device))
        return self

    @classmethod
    def from_vectors(cls, vectors: torch.Tensor | np.ndarray | Any) -> BamParams:
        """One θ per batch row from ``vectors`` ``[R, 4172]`` (each row checked as :meth:`from_vector`)."""
        vectors = torch.as_tensor(vectors)
        if vectors.ndim != 2 or vectors.shape[0] < 1:
            raise ValueError(f"expected [rows, {NUM_PARAMS}] parameter vectors, got shape {tuple(vectors.shape)}")
        rows = [BamParams().from_vector(vector) for vector in vectors]
        stacked = cls(rows=len(rows))
        with torch.no_grad():
            for name, shape in PARAM_LAYOUT:
                getattr(stacked, name).copy_(torch.stack([getattr(r, name) for r in rows]).reshape(
                    stacked._shape(shape)))
        return stacked

    def extra_repr(self) -> str:
        return f"num_params={NUM_PARAMS}" + (f", rows={self.rows}" if self.rows is not None else "")
