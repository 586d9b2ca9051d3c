"""Paths of the project's own shipped artefacts (kept import-light: the CLI reads them for its defaults)."""

from __future__ import annotations

from pathlib import Path

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
# the NAMM evolved for the embedded SmolLM2-135M by configs/evolve_smollm2.yaml (see results/evolution.md)
SHIPPED_NAMM = CHECKPOINTS / "namm_smollm2"
