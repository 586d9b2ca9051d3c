"""scripts/pool_namm.py: a pooled copy of a NAMM checkpoint, its b_c calibrated on recorded lists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from namm_suite.evolution.distill import UpdateRecord, save_records
from namm_suite.namm import N_BINS, NUM_PARAMS, load_namm, pool_scores
from namm_suite.namm.scorer import bam_scores
from namm_suite.policies.namm import NammPolicy

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "pool_namm.py"


def test_pooled_checkpoint_keeps_theta_and_the_asked_share(tmp_path):
    source = NammPolicy()
    source.set_vector(torch.randn(NUM_PARAMS, generator=torch.Generator().manual_seed(0)) * 0.05)
    source.set_stats(torch.rand(N_BINS), torch.rand(N_BINS) + 0.5, 7)
    source.save(tmp_path / "source")
    g = torch.Generator().manual_seed(1)
    records = [UpdateRecord(3, 80, torch.randn(2, 80, 25, generator=g).half(), torch.rand(2, 80), one_shot=i % 2 == 0)
               for i in range(6)]
    (tmp_path / "records").mkdir()
    save_records(records, tmp_path / "records" / "episode.pt")
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "source"), str(tmp_path / "pooled"),
                           "--kernel", "5", "--records", str(tmp_path / "records"), "--one-shot", "--keep", "0.4"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    pooled = load_namm(tmp_path / "pooled")
    assert pooled.hparams.kernel == 5 and pooled.count == 7 and torch.equal(pooled.mu, source.mu)
    moved = pooled.params.to_vector() - source.vector()
    assert moved[:-1].abs().max() == 0 and moved[-1] != 0  # only b_c (the last of θ) moved
    one_shot = [r for r in records if r.one_shot]
    valid = torch.ones(2, 80, dtype=torch.bool)
    kept = torch.cat([pool_scores(bam_scores(r.features.float(), valid, pooled.params), valid, 5).flatten()
                      for r in one_shot]) >= 0
    assert abs(kept.float().mean().item() - 0.4) < 0.01


def test_a_folder_without_records_is_named(tmp_path):
    NammPolicy().save(tmp_path / "source")
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "source"), str(tmp_path / "out"),
                           "--kernel", "3", "--records", str(tmp_path)], capture_output=True, text=True, check=False)
    assert done.returncode != 0 and f"{tmp_path}: no records" in done.stderr
    assert not (tmp_path / "out.json").exists()
