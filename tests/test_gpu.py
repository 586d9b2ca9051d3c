"""GPU checks (marker ``gpu``; skipped without CUDA, and by ``make test``): tiny random models in bf16 on the
GPU. The full cache equals the plain model, evicting equals masking, and the NAMM's features and scores in
bf16 stay close to fp32. ``benchmarks/gpu.sh`` runs them before the GPU benchmark.

``NAMM_TEST_DEVICE=cpu pytest -m gpu tests/test_gpu.py`` runs the same checks on the CPU (in bf16).
"""

from __future__ import annotations

import os

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache

from namm_suite.manager import MemoryConfig, MemoryManager
from namm_suite.policies import create_policy
from namm_suite.shipped import SHIPPED_NAMM

from .test_eviction import HIDDEN, _ScriptedPolicy
from .tiny_models import random_ids, tiny_config

DEVICE = os.environ.get("NAMM_TEST_DEVICE", "cuda")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs CUDA")]


def _pair(arch: str, other: str, dtype: torch.dtype):
    """The same random weights with ``other`` attention and with the namm hook, on DEVICE in ``dtype``."""
    torch.manual_seed(0)
    reference = AutoModelForCausalLM.from_config(tiny_config(arch), attn_implementation=other)
    hooked = AutoModelForCausalLM.from_config(tiny_config(arch), attn_implementation="namm")
    hooked.load_state_dict(reference.state_dict())
    return reference.to(DEVICE, dtype).eval(), hooked.to(DEVICE, dtype).eval()


def _close(expected: list[torch.Tensor], got: list[torch.Tensor], tolerance: float) -> None:
    for step, (a, b) in enumerate(zip(expected, got, strict=True)):
        scale = max(1.0, a.float().abs().max().item())
        assert (a.float() - b.float()).abs().max().item() <= tolerance * scale, f"step {step}"


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_full_cache_equals_plain_model_in_bf16(arch):
    plain, hooked = _pair(arch, "sdpa", torch.bfloat16)
    ids = random_ids(150).to(DEVICE)
    manager = MemoryManager(create_policy("full"), MemoryConfig(update_every=32))
    manager.new_cache()
    with torch.no_grad():
        cache = DynamicCache(config=plain.config)
        expected = [plain(input_ids=ids, cache=cache).logits[:, -1]]
        got = [manager.forward(hooked, ids)]
        for _ in range(10):  # the same tokens into both, so one rounding flip cannot derail the comparison
            token = expected[-1].argmax(-1, keepdim=True)
            expected.append(plain(input_ids=token, cache=cache).logits[:, -1])
            got.append(manager.forward(hooked, token))
    assert manager.cache.layers[0].keys.dtype == torch.bfloat16
    _close(expected, got, 2e-2)


def test_evicting_equals_masking_in_bf16():
    HIDDEN.clear()
    HIDDEN.update({(0, 0): [1, 5, 9], (0, 1): [4, 7], (1, 0): [0, 2, 3, 15], (1, 1): [12]})
    reference, hooked = _pair("llama", "masked_reference", torch.bfloat16)
    ids = random_ids(40, seed=11).to(DEVICE)
    manager = MemoryManager(_ScriptedPolicy(), MemoryConfig(update_every=16))
    manager.new_cache()
    with torch.no_grad():
        cache = DynamicCache()
        bounds = manager.chunk_bounds(ids.shape[1])
        expected = [reference(input_ids=ids[:, a:b], cache=cache).logits[:, -1] for a, b in bounds]
        got = [manager.forward(hooked, ids[:, a:b]) for a, b in bounds]
    assert manager.cache.layers[0].held()[0].tolist() == [40 - 3, 40 - 2]
    _close(expected, got, 2e-2)


def test_namm_features_and_scores_in_bf16_close_to_fp32(monkeypatch):
    from namm_suite.policies import namm as namm_module

    scores: dict[torch.dtype, list[torch.Tensor]] = {}
    states: dict[torch.dtype, list[torch.Tensor]] = {}
    real = namm_module.bam_scores
    for dtype in (torch.float32, torch.bfloat16):
        recorded = scores.setdefault(dtype, [])
        monkeypatch.setattr(namm_module, "bam_scores", lambda f, v, p, out=recorded: out.append(real(f, v, p))
                            or out[-1])
        _, hooked = _pair("llama", "sdpa", dtype)
        manager = MemoryManager(create_policy("namm", checkpoint=str(SHIPPED_NAMM)), MemoryConfig(update_every=32))
        manager.new_cache()
        with torch.no_grad():
            manager.forward(hooked, random_ids(64, seed=3).to(DEVICE))
            manager.forward(hooked, random_ids(1, seed=4).to(DEVICE))  # the update at T = 64
        states[dtype] = [layer.state["namm_ema"].float().cpu() for layer in manager.cache.layers]
    # the first update (T = 32) of each layer sees the same 32 tokens in both dtypes
    for a, b in zip(scores[torch.float32][:2], scores[torch.bfloat16][:2], strict=True):
        finite = torch.isfinite(a)
        assert torch.equal(finite, torch.isfinite(b))
        assert (a[finite] - b[finite]).abs().max() <= 0.05 * a[finite].abs().max()
    first = states[torch.float32][0], states[torch.bfloat16][0]
    if first[0].shape == first[1].shape:  # the same tokens kept: the features are comparable slot by slot
        assert (first[0] - first[1]).abs().max() <= 0.05 * first[0].abs().max()
