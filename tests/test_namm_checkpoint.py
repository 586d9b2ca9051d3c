"""NAMM checkpoints: safetensors + JSON sidecar round trip and every refusal (docs/namm-spec.md §7)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from namm_suite.namm import NUM_PARAMS, BamParams, NammHyperParams, load_namm, save_namm
from namm_suite.policies.namm import NammPolicy

PROVENANCE = {"curriculum": ["passage_retrieval_en"], "generation": 40, "fitness": 0.87, "git": "abc123"}


def write_checkpoint(path: Path, hparams: NammHyperParams | None = None, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    params = BamParams().from_vector(torch.randn(NUM_PARAMS, generator=g))
    mu, var = torch.randn(17, generator=g), torch.rand(17, generator=g) + 0.1
    save_namm(path, params, mu, var, 1234, hparams or NammHyperParams(), PROVENANCE)
    return params, mu, var


def rewrite_tensors(base: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Replace the tensor file and keep the sidecar's sha256 in step, to reach the tensor checks."""
    save_file(tensors, base.with_suffix(".safetensors"))
    sidecar = base.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    meta["tensors_sha256"] = hashlib.sha256(base.with_suffix(".safetensors").read_bytes()).hexdigest()
    sidecar.write_text(json.dumps(meta))


def test_round_trip(tmp_path):
    hparams = NammHyperParams(update_every=256)
    params, mu, var = write_checkpoint(tmp_path / "namm", hparams)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["namm.json", "namm.safetensors"]  # no temp files
    loaded, mu2, var2, count, hparams2, provenance = load_namm(
        tmp_path / "namm.safetensors", NammHyperParams()
    )
    assert torch.equal(loaded.to_vector(), params.to_vector())
    assert torch.equal(mu2, mu) and torch.equal(var2, var) and mu2.dtype == torch.float32
    assert count == 1234 and hparams2 == hparams and provenance == PROVENANCE
    meta = json.loads((tmp_path / "namm.json").read_text())
    assert meta["hparams"]["gamma"] == 0.99 and meta["hparams"]["spec_version"] == "1"


@pytest.mark.parametrize(
    ("field", "saved", "expected"),
    [
        ("gamma", 0.99, 0.98),
        ("n_recency", 4, 5),
        ("selection", "kappa", "threshold"),
        ("spec_version", "1", "2"),
    ],
)
def test_mismatched_hparams_are_refused_naming_the_field(tmp_path, field, saved, expected):
    write_checkpoint(tmp_path / "namm")
    extra = {"d_feature": 27} if field == "n_recency" else {}
    want = NammHyperParams(**{field: expected}, **extra)
    with pytest.raises(ValueError, match=rf"'{field}' is {saved!r} in the checkpoint but {expected!r}"):
        load_namm(tmp_path / "namm", want)


def test_update_every_is_a_run_setting_and_ignore_skips_fields(tmp_path):
    write_checkpoint(tmp_path / "namm", NammHyperParams(update_every=64))
    assert load_namm(tmp_path / "namm", NammHyperParams(update_every=512)).hparams.update_every == 64
    load_namm(tmp_path / "namm", NammHyperParams(selection="threshold"), ignore=("selection",))


def test_hyper_parameters_are_validated():
    with pytest.raises(ValueError, match="multiple of hop"):
        NammHyperParams(update_every=100)
    with pytest.raises(ValueError, match="selection"):
        NammHyperParams(selection="top")
    with pytest.raises(ValueError, match="d_feature"):
        NammHyperParams(n_recency=5)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.json"):
        load_namm(tmp_path / "nothing")
    write_checkpoint(tmp_path / "namm")
    (tmp_path / "namm.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"namm\.safetensors"):
        load_namm(tmp_path / "namm")


def test_truncated_files_are_refused(tmp_path):
    write_checkpoint(tmp_path / "namm")
    tensors = tmp_path / "namm.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"namm\.safetensors.*sha256"):
        load_namm(tmp_path / "namm")
    sidecar = tmp_path / "namm.json"
    sidecar.write_text(sidecar.read_text()[:40])
    with pytest.raises(ValueError, match=r"namm\.json.*not valid JSON"):
        load_namm(tmp_path / "namm")


def test_wrong_tensor_shape_dtype_or_name_is_refused(tmp_path):
    params, mu, var = write_checkpoint(tmp_path / "namm")
    good = {name: t.detach().clone() for name, t in params.named_parameters()} | {"mu": mu, "var": var}

    rewrite_tensors(tmp_path / "namm", good | {"W_a": torch.zeros(24, 96)})
    with pytest.raises(ValueError, match=r"namm\.safetensors: tensor 'W_a' .*\(24, 96\).*\(25, 96\)"):
        load_namm(tmp_path / "namm")
    rewrite_tensors(tmp_path / "namm", good | {"var": var.double()})
    with pytest.raises(ValueError, match=r"tensor 'var' is torch.float64"):
        load_namm(tmp_path / "namm")
    rewrite_tensors(tmp_path / "namm", {k: v for k, v in good.items() if k != "b_c"})
    with pytest.raises(ValueError, match=r"tensor 'b_c' is missing"):
        load_namm(tmp_path / "namm")
    rewrite_tensors(tmp_path / "namm", good)
    assert torch.equal(load_namm(tmp_path / "namm").params.to_vector(), params.to_vector())


def test_save_refuses_bad_statistics_and_provenance(tmp_path):
    with pytest.raises(ValueError, match=r"mu must be a float tensor of shape \(17,\)"):
        save_namm(tmp_path / "x", BamParams(), torch.zeros(16), torch.ones(17), 0, NammHyperParams(), {})
    with pytest.raises(ValueError, match="JSON-serialisable"):
        save_namm(
            tmp_path / "x",
            BamParams(),
            torch.zeros(17),
            torch.ones(17),
            0,
            NammHyperParams(),
            {"tensor": torch.zeros(1)},
        )
    assert list(tmp_path.iterdir()) == []


def test_policy_loads_checkpoint_and_saves_it_back(tmp_path):
    params, mu, var = write_checkpoint(tmp_path / "namm")
    policy = NammPolicy.from_checkpoint(tmp_path / "namm", selection="threshold")
    assert torch.equal(policy.vector(), params.to_vector())
    assert torch.equal(policy.mu, mu) and torch.equal(policy.var, var) and policy.stats_count == 1234
    assert policy.provenance == PROVENANCE
    policy.save(tmp_path / "copy", {"copied": True})
    copy = load_namm(tmp_path / "copy")
    assert torch.equal(copy.params.to_vector(), params.to_vector()) and copy.provenance == {"copied": True}
    assert NammPolicy().vector().abs().sum() == 0 and torch.equal(NammPolicy().var, torch.ones(17))


def test_kernel_is_recorded_and_older_sidecars_load_with_none(tmp_path):
    write_checkpoint(tmp_path / "pooled", NammHyperParams(kernel=7))
    assert load_namm(tmp_path / "pooled").hparams.kernel == 7
    assert NammPolicy.from_checkpoint(tmp_path / "pooled").kernel == 7  # the checkpoint's width by default
    assert NammPolicy.from_checkpoint(tmp_path / "pooled", kernel=1).kernel == 1  # an explicit one wins
    # a sidecar written before the field existed ran without pooling
    write_checkpoint(tmp_path / "old")
    meta = json.loads((tmp_path / "old.json").read_text())
    del meta["hparams"]["kernel"]
    (tmp_path / "old.json").write_text(json.dumps(meta))
    assert load_namm(tmp_path / "old").hparams.kernel == 1
    policy = NammPolicy.from_checkpoint(tmp_path / "old", kernel=5)
    policy.save(tmp_path / "resaved")
    assert load_namm(tmp_path / "resaved").hparams.kernel == 5  # what it ran with is what it records


@pytest.mark.parametrize("kernel", [0, 2, -3, 1.0, True])
def test_bad_kernels_are_refused(kernel):
    with pytest.raises(ValueError, match="kernel must be a positive odd number"):
        NammHyperParams(kernel=kernel)
    with pytest.raises(ValueError, match="NammPolicy.kernel must be a positive odd number"):
        NammPolicy(kernel=kernel)


def test_gamma_comes_from_the_checkpoint_unless_given(tmp_path):
    write_checkpoint(tmp_path / "namm")
    assert NammPolicy.from_checkpoint(tmp_path / "namm").gamma == 0.99  # the spec's, recorded
    fast = NammPolicy.from_checkpoint(tmp_path / "namm", gamma=0.9)
    fast.save(tmp_path / "fast")
    assert load_namm(tmp_path / "fast").hparams.gamma == 0.9
    assert NammPolicy.from_checkpoint(tmp_path / "fast").gamma == 0.9
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="NammPolicy.gamma must lie in"):
            NammPolicy(gamma=bad)
