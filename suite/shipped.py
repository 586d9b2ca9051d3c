"""Paths of the project's own shipped artefacts (kept import-light: the CLI reads them for its defaults)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = PROJECT_ROOT / "checkpoints"
# the best NAMM for the embedded SmolLM2-135M so far: v6, v5 (a scorer fitted to the query-aware eviction
# under γ = 0.97, its scores max-pooled over 15 neighbouring tokens; scripts/distill_namm.py) after 20
# generations of CMA-ES on the answer likelihood (configs/evolve_smollm2_qa_g97.yaml, then
# configs/evolve_smollm2_qa2k_g97.yaml); results/evolution.md says where it wins and by how much. v5 and v4
# were the defaults before it; v1, from 30 CPU minutes of CMA-ES (configs/evolve_smollm2.yaml), is
# checkpoints/namm_smollm2.
SHIPPED_NAMM = CHECKPOINTS / "namm_smollm2_v6"


def default_namm() -> str | None:
    """The NAMM checkpoint sweeps use unless told otherwise: the shipped one, None (θ = 0) where it is absent."""
    return str(SHIPPED_NAMM) if SHIPPED_NAMM.with_suffix(".safetensors").exists() else None


def portable_path(path: str | None) -> str | None:
    """``path`` as result rows record it: relative to the project root when it lies inside the project
    (``checkpoints/namm_smollm2_v2``), else as given — never this machine's absolute layout."""
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(PROJECT_ROOT))
    except (ValueError, OSError):
        return str(path)
