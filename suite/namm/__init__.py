"""Neural Attention Memory Model, BAM configuration (Cetin et al., ICLR 2025), per ``docs/namm-spec.md``.

features -> scorer -> selection, with θ in :class:`BamParams` and checkpoints in safetensors + JSON.
The memory policy that wires them to a cache is ``namm_suite.policies.namm.NammPolicy``.
"""

from .checkpoint import (
    NammCheckpoint,
    NammHyperParams,
    check_hparams,
    checkpoint_paths,
    load_namm,
    save_namm,
)
from .features import (
    CONTEXT,
    GAMMA,
    HOP,
    N_BINS,
    N_FFT,
    RunningStats,
    build_features,
    frame_weights,
    hann_window,
    recency_encoding,
    spectrogram,
    standardise,
    update_ema,
)
from .params import D_FEATURE, NUM_PARAMS, PARAM_LAYOUT, PARAM_OFFSETS, BamParams
from .scorer import backward_mask, bam_scores, pool_scores
from .selection import SELECTIONS, prepare_scores, select_kappa, select_threshold

__all__ = [
    "CONTEXT",
    "D_FEATURE",
    "GAMMA",
    "HOP",
    "NUM_PARAMS",
    "N_BINS",
    "N_FFT",
    "PARAM_LAYOUT",
    "PARAM_OFFSETS",
    "SELECTIONS",
    "BamParams",
    "NammCheckpoint",
    "NammHyperParams",
    "RunningStats",
    "backward_mask",
    "bam_scores",
    "build_features",
    "check_hparams",
    "checkpoint_paths",
    "frame_weights",
    "hann_window",
    "load_namm",
    "pool_scores",
    "prepare_scores",
    "recency_encoding",
    "save_namm",
    "select_kappa",
    "select_threshold",
    "spectrogram",
    "standardise",
    "update_ema",
]
