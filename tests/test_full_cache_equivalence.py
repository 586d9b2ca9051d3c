"""The full-cache policy through the hook must reproduce the plain model exactly (fp32)."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from namm_suite.manager import MemoryConfig, MemoryManager
from namm_suite.policies.full import FullPolicy

from .tiny_models import random_ids, tiny_pair


class _FullWithAttention(FullPolicy):
    """Full cache that asks for attention, so the hook takes its eager path."""

    needs_attention = True


def _plain_greedy(model, ids, steps):
    cache = DynamicCache(config=model.config)
    out = model(input_ids=ids, cache=cache, use_cache=True)
    logits = [out.logits[:, -1]]
    token = out.logits[:, -1].argmax(-1, keepdim=True)
    for _ in range(steps):
        out = model(input_ids=token, cache=cache, use_cache=True)
        logits.append(out.logits[:, -1])
        token = out.logits[:, -1].argmax(-1, keepdim=True)
    return logits


def _managed_greedy(model, manager, ids, steps):
    manager.new_cache()
    logits = [manager.forward(model, ids)]
    token = logits[-1].argmax(-1, keepdim=True)
    for _ in range(steps):
        logits.append(manager.forward(model, token))
        token = logits[-1].argmax(-1, keepdim=True)
    return logits


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
@pytest.mark.parametrize("policy_cls", [FullPolicy, _FullWithAttention], ids=["sdpa", "eager"])
def test_full_policy_matches_plain_model(arch, policy_cls):
    plain, hooked = tiny_pair(arch)
    ids = random_ids(70)
    manager = MemoryManager(policy_cls(), MemoryConfig(update_every=32))
    with torch.no_grad():
        expected = _plain_greedy(plain, ids, steps=12)
        got = _managed_greedy(hooked, manager, ids, steps=12)
    for step, (a, b) in enumerate(zip(expected, got, strict=True)):
        assert (a - b).abs().max().item() <= 1e-5, f"{arch} step {step}"
    assert manager.stats().n_updates == 2  # T = 32 and 64 crossed in prefill; prompt + 12 = 82


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_full_prefill_logits_match_every_position(arch):
    plain, hooked = tiny_pair(arch)
    ids = random_ids(40, seed=3)
    manager = MemoryManager(FullPolicy(), MemoryConfig(update_every=16))
    cache = manager.new_cache()
    with torch.no_grad():
        expected = plain(input_ids=ids).logits
        got = torch.cat([hooked(input_ids=ids[:, a:b], cache=cache).logits
                         for a, b in manager.chunk_bounds(ids.shape[1])], dim=1)
    assert (expected - got).abs().max().item() <= 1e-5


def test_hook_without_ragged_cache_is_plain_attention():
    plain, hooked = tiny_pair("llama")
    ids = random_ids(30, seed=5)
    with torch.no_grad():
        assert (plain(input_ids=ids).logits - hooked(input_ids=ids).logits).abs().max() <= 1e-5
