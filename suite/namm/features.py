"""NAMM token features (docs/namm-spec.md §3, §7): attention spectrogram, EMA over frames, recency,
statistics.

Every function is vectorised over arbitrary leading dims (``[B, H]`` in the policy) and computes in
float32, except the recency encoding, which is computed in float64 and rounded to float32 like the
reference. Time in a spectrogram is the query index; frequency bins are cycles per 32 queries.
"""

from __future__ import annotations

import math

import torch

N_FFT = 32
HOP = 16
N_BINS = N_FFT // 2 + 1  # 17 one-sided STFT bins
CONTEXT = N_FFT - HOP  # 16 samples carried from one update to the next
GAMMA = 0.99  # per-query EMA coefficient; per frame a = γ^16
RECENCY_BASE = 50000.0
N_RECENCY = 4  # four frequencies -> four sines then four cosines
STD_FLOOR = 1e-7  # Ê = (E − μ) / max(√v, 1e-7)


def hann_window(device: torch.device | str | None = None) -> torch.Tensor:
    """Periodic Hann window ``w[m] = 0.5 − 0.5·cos(2πm/32)``, float32 ``[32]`` (Σw = 16)."""
    return torch.hann_window(N_FFT, periodic=True, dtype=torch.float32, device=device)


def spectrogram(signal: torch.Tensor) -> torch.Tensor:
    """Magnitude STFT of ``signal`` float ``[..., L]`` -> float32 ``[..., F, 17]`` with F = (L − 32)//16 + 1.

    Frame f covers samples 16f..16f+31; no centring, padding or scaling. Equal (to float32 rounding) to
    ``torch.stft(x, 32, 16, window=hann_window(), center=False, onesided=True, return_complex=True).abs()``
    transposed to frames-first, but keeps the leading dims instead of flattening them.
    """
    return _column_magnitudes(signal[..., None]).squeeze(-1)


def _column_magnitudes(columns: torch.Tensor) -> torch.Tensor:
    """Magnitude STFT of every column of ``columns`` float ``[..., L, M]`` (time down the rows, L a
    multiple of 16) -> float32 ``[..., F, 17, M]``.

    The overlapping 32-sample frames are a strided view of the rows (no copy), so the windowed DFT of all
    frames is one batched matmul with the fixed ``[34, 32]`` matrix of Hann-windowed cosines and negated
    sines; the magnitude is ``sqrt(re² + im²)`` (``torch.hypot`` is several times slower on CPU).
    """
    length, width = columns.shape[-2:]
    if length < N_FFT:
        raise ValueError(f"a spectrogram needs at least {N_FFT} samples, got {length}")
    columns = columns.float()
    if length % HOP:
        columns = columns[..., : length - length % HOP, :]
    columns = columns.contiguous()
    frames = (length - N_FFT) // HOP + 1
    lead = columns.shape[:-2]
    flat = columns.reshape(-1, columns.shape[-2], width)
    batch_stride = flat.stride(0)
    views = flat.as_strided((flat.shape[0], frames, N_FFT, width), (batch_stride, HOP * width, width, 1))
    spec = torch.matmul(_dft_matrix(columns.device), views)  # [B, F, 34, M]
    magnitude = (spec[..., :N_BINS, :].square() + spec[..., N_BINS:, :].square()).sqrt_()
    return magnitude.reshape(*lead, frames, N_BINS, width)


_DFT: dict[torch.device, torch.Tensor] = {}


def _dft_matrix(device: torch.device) -> torch.Tensor:
    """Float32 ``[34, 32]``: rows w[m]·cos(2πkm/32) for k = 0..16, then −w[m]·sin(2πkm/32) (computed in
    float64, rounded once)."""
    if device not in _DFT:
        m = torch.arange(N_FFT, dtype=torch.float64)
        angle = 2 * math.pi * torch.arange(N_BINS, dtype=torch.float64)[:, None] * m / N_FFT  # [17, 32]
        window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
        _DFT[device] = torch.cat([window * torch.cos(angle), -window * torch.sin(angle)]).to(device, torch.float32)
    return _DFT[device]


def frame_weights(num_slots: int, num_new: int, num_frames: int, gamma: float = GAMMA) -> torch.Tensor:
    """EMA weight of frame f for cache slot j, float32 ``[N, F]`` (docs/namm-spec.md §3.3).

    ``(1 − a)·a^(F−1−f)`` with a = γ^16 for old slots (the first ``N − num_new``); a new slot at offset
    o = j − n_old only receives frames f ≥ ⌊o/16⌋ (its weight is 0 on earlier frames).
    """
    a = gamma**HOP
    f = torch.arange(num_frames, dtype=torch.float64)
    w = (1.0 - a) * a ** (num_frames - 1 - f)
    offset = torch.arange(num_slots) - (num_slots - num_new)  # negative for old slots
    first_frame = torch.where(offset >= 0, torch.div(offset, HOP, rounding_mode="floor"), 0)
    included = f[None, :] >= first_frame[:, None]
    return (w[None, :] * included).to(torch.float32)


def update_ema(
    attn: torch.Tensor,
    ema: torch.Tensor,
    context: torch.Tensor,
    num_new: int,
    gamma: float = GAMMA,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One NAMM feature update (docs/namm-spec.md §3.1–3.3) for every cached token.

    Args:
        attn: float ``[..., n, N]`` attention probabilities of the n queries since the previous update over
            the N cached keys (oldest first; rows zero-extended on the right). n must be a positive
            multiple of 16.
        ema: float ``[..., N, 17]`` un-standardised EMA of the spectrogram from the previous update.
        context: float ``[..., N, 16]`` last 16 attention samples of each token from the previous update.
        num_new: tokens appended since the previous update; they are the last ``num_new`` slots. Their
            ``ema`` and ``context`` entries are ignored (treated as zero).
        gamma: per-query EMA coefficient γ.

    Returns:
        ``(ema, context)``: float32 ``[..., N, 17]`` and ``[..., N, 16]``. The context is the last 16
        samples of the padded signal, to be carried into the next update.
    """
    if attn.ndim < 2:
        raise ValueError(f"attn must be [..., n, N], got shape {tuple(attn.shape)}")
    n, num_slots = attn.shape[-2:]
    lead = tuple(attn.shape[:-2])
    if n <= 0 or n % HOP != 0:
        raise ValueError(
            f"a NAMM update needs a positive multiple of {HOP} attention rows (queries), got {n}; "
            f"use an update_every that is a multiple of {HOP}"
        )
    if tuple(ema.shape) != (*lead, num_slots, N_BINS):
        raise ValueError(f"ema must have shape {(*lead, num_slots, N_BINS)}, got {tuple(ema.shape)}")
    if tuple(context.shape) != (*lead, num_slots, CONTEXT):
        raise ValueError(f"context must have shape {(*lead, num_slots, CONTEXT)}, got {tuple(context.shape)}")
    if not 0 <= num_new <= num_slots:
        raise ValueError(f"num_new must lie in [0, {num_slots}], got {num_new}")

    is_old = torch.arange(num_slots, device=attn.device) < num_slots - num_new  # [N]
    # new tokens start from zero context and zero EMA whatever the caller passed
    prev_context = torch.where(is_old[:, None], context.float(), 0.0)
    signal = torch.cat([prev_context.transpose(-1, -2), attn.float()], dim=-2)  # [..., 16 + n, N], time down
    frames = n // HOP
    # every token weighs frame f by (1 − a)·a^(F−1−f) (frame_weights), except that a new token at offset o
    # among the last num_new slots skips the frames before its own block, f < ⌊o/16⌋
    base = frame_weights(1, 0, frames, gamma).to(attn.device)[0]  # [F]: an old token's weights
    n_old = num_slots - num_new
    fresh = signal.new_empty(*lead, num_slots, N_BINS)
    for start, stop, first in _column_blocks(num_slots, num_new, frames):
        # the block's frames from the first that any of its tokens weighs (earlier ones are skipped); then
        # zero the frames its new tokens skip, and one [F'] × [F', 17·w] product
        magnitudes = _column_magnitudes(signal[..., first * HOP:, start:stop])  # [..., F', 17, w]
        new = max(start, n_old)
        if new < stop:
            own_frame = torch.arange(new - n_old, stop - n_old, device=attn.device) // HOP  # [w_new]
            receives = torch.arange(first, frames, device=attn.device)[:, None] >= own_frame  # [F', w_new]
            magnitudes[..., new - start:] *= receives[:, None, :]
        block = torch.matmul(base[first:], magnitudes.reshape(*lead, frames - first, -1))
        fresh[..., start:stop, :] = block.reshape(*lead, N_BINS, stop - start).transpose(-1, -2)
    decayed = torch.where(is_old[:, None], ema.float() * (gamma**n), 0.0)
    return decayed + fresh, signal[..., -CONTEXT:, :].transpose(-1, -2).contiguous()


COLUMN_BLOCK = 256  # tokens per block of an update: keeps its temporaries in cache, skips its zero frames


def _column_blocks(num_slots: int, num_new: int, frames: int) -> list[tuple[int, int, int]]:
    """``(start, stop, first frame)`` of the blocks of :data:`COLUMN_BLOCK` tokens an update computes in
    turn, each from the first of its ``frames`` that its oldest token receives (a new token at offset o
    among the new ones receives frames ≥ ⌊o/16⌋; an old token all of them)."""
    n_old = num_slots - num_new
    return [(start, min(start + COLUMN_BLOCK, num_slots), min(max(start - n_old, 0) // HOP, frames - 1))
            for start in range(0, num_slots, COLUMN_BLOCK)]


def update_ema_from_rows(attn: torch.Tensor, ema: torch.Tensor, context: torch.Tensor,
                         num_new: int, gamma: float = GAMMA) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`update_ema` on the newest whole hops of ``attn`` ``[..., n, N]`` (an update off the schedule,
    e.g. at the end of a compressed part, may follow any number n of queries); with fewer than one hop the
    stored ``(ema, context)`` are returned unchanged."""
    rows = attn.shape[-2] - attn.shape[-2] % HOP
    if not rows:
        return ema, context
    return update_ema(attn[..., attn.shape[-2] - rows:, :], ema, context, num_new, gamma)


def recency_encoding(age: torch.Tensor) -> torch.Tensor:
    """Sinusoidal encoding of token age (docs/namm-spec.md §3.5): int ``[...]`` -> float32 ``[..., 8]``.

    ``(sin(age·ω_0..3), cos(age·ω_0..3))`` with ω_i = 50000^(−i/4); computed in float64, then rounded.
    The reference tabulates ages 0..32768; here any age is computed directly.
    """
    omega = RECENCY_BASE ** (-torch.arange(N_RECENCY, dtype=torch.float64, device=age.device) / N_RECENCY)
    angle = age.to(torch.float64)[..., None] * omega
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1).to(torch.float32)


def standardise(ema: torch.Tensor, mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """``(E − μ) / max(√v, 1e-7)`` for ``ema [..., 17]`` and fixed ``mu``, ``var`` ``[17]``; float32."""
    scale = torch.sqrt(var.float()).clamp_min(STD_FLOOR)
    return (ema.float() - mu.float()) / scale


def build_features(
    ema: torch.Tensor,
    positions: torch.Tensor,
    valid: torch.Tensor,
    mu: torch.Tensor,
    var: torch.Tensor,
) -> torch.Tensor:
    """Token features φ = [R(age), Ê] (docs/namm-spec.md §3.4–3.6): float32 ``[..., N, 25]``.

    Args:
        ema: float ``[..., N, 17]`` un-standardised EMA.
        positions: int ``[..., N]`` absolute 0-based token positions.
        valid: bool ``[..., N]``; False marks padding (their features are meaningless, age is set to 0).
        mu, var: float ``[17]`` frozen standardisation statistics.

    The age of a token is the newest valid position of its head minus its own position.
    """
    if positions.shape != valid.shape or tuple(ema.shape[:-1]) != tuple(valid.shape):
        raise ValueError(
            f"shape mismatch: ema {tuple(ema.shape)}, positions {tuple(positions.shape)}, "
            f"valid {tuple(valid.shape)}"
        )
    positions = positions.long()
    if positions.shape[-1] == 0:
        age = positions
    else:
        floor = torch.iinfo(torch.int64).min
        newest = positions.masked_fill(~valid, floor).amax(dim=-1, keepdim=True)
        age = (newest - positions).masked_fill(~valid, 0)
    return torch.cat([recency_encoding(age), standardise(ema, mu, var)], dim=-1)


class RunningStats:
    """Pooled population mean and variance of feature vectors (docs/namm-spec.md §7).

    Batches are merged with the pairwise rule n = n_a + n_b, μ = (n_a·μ_a + n_b·μ_b)/n,
    v = (n_a·v_a + n_b·v_b)/n + n_a·n_b·(μ_a − μ_b)²/n². Accumulates in float64; ``mean`` and ``var``
    are returned as float32 ``[dim]`` (what the NAMM uses), ``count`` as an int.
    """

    def __init__(self, dim: int = N_BINS) -> None:
        self.dim = dim
        self._count = 0
        self._mean = torch.zeros(dim, dtype=torch.float64)
        self._var = torch.zeros(dim, dtype=torch.float64)

    @classmethod
    def from_values(cls, mean: torch.Tensor, var: torch.Tensor, count: int) -> RunningStats:
        """Resume from stored statistics (e.g. a checkpoint's μ, v and count)."""
        stats = cls(dim=mean.numel())
        stats._count = int(count)
        stats._mean = mean.detach().reshape(-1).to("cpu", torch.float64).clone()
        stats._var = var.detach().reshape(-1).to("cpu", torch.float64).clone()
        return stats

    @property
    def count(self) -> int:
        return self._count

    @property
    def mean(self) -> torch.Tensor:
        return self._mean.to(torch.float32)

    @property
    def var(self) -> torch.Tensor:
        return self._var.to(torch.float32)

    def update(self, vectors: torch.Tensor) -> None:
        """Add ``vectors`` float ``[M, dim]`` (M may be 0)."""
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape [M, {self.dim}], got {tuple(vectors.shape)}")
        if vectors.shape[0] == 0:
            return
        x = vectors.detach().to("cpu", torch.float64)
        self._merge(x.shape[0], x.mean(dim=0), x.var(dim=0, unbiased=False))

    def merge(self, other: RunningStats) -> None:
        """Pool another accumulator into this one (e.g. from a worker process)."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of dim {other.dim} into dim {self.dim}")
        self._merge(other._count, other._mean, other._var)

    def _merge(self, n_b: int, mean_b: torch.Tensor, var_b: torch.Tensor) -> None:
        if n_b == 0:
            return
        n_a, n = self._count, self._count + n_b
        delta = self._mean - mean_b
        self._mean = (n_a * self._mean + n_b * mean_b) / n
        self._var = (n_a * self._var + n_b * var_b) / n + n_a * n_b * delta**2 / n**2
        self._count = n

    def __repr__(self) -> str:
        return f"RunningStats(dim={self.dim}, count={self._count})"
