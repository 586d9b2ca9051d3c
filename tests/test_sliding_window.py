"""Sliding-window and hybrid architectures (transformers' ``layer_types``): a Mistral-style model whose every
layer slides, and a Gemma-3-style hybrid of sliding and full layers, both tiny with random weights.

The full cache must equal plain transformers, evicting must equal masking, sliding layers must hold about
what transformers' own sliding cache holds, and a budget applies to a sliding layer only below its window.
"""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from namm_suite.manager import MemoryConfig, MemoryManager
from namm_suite.policies import create_policy

from .single_thread import one_torch_thread  # noqa: F401  (autouse)
from .test_eviction import HIDDEN, _ScriptedPolicy
from .tiny_models import WINDOW, random_ids, tiny_pair

ARCHS = ["mistral", "gemma3"]


def _plain_greedy(model, ids, steps):
    """Logits of plain transformers (its own sliding-window cache) over a prompt and greedy steps."""
    cache = DynamicCache(config=model.config)
    logits = [model(input_ids=ids, cache=cache, use_cache=True).logits[:, -1]]
    for _ in range(steps):
        logits.append(model(input_ids=logits[-1].argmax(-1, keepdim=True), cache=cache).logits[:, -1])
    return logits, cache


def _managed_greedy(model, manager, ids, steps):
    manager.new_cache()
    with torch.no_grad():
        logits = [manager.forward(model, ids)]
        for _ in range(steps):
            logits.append(manager.forward(model, logits[-1].argmax(-1, keepdim=True)))
    return logits


@pytest.mark.parametrize("arch", ARCHS)
def test_full_cache_equals_plain_transformers_and_holds_its_memory(arch):
    plain, hooked = tiny_pair(arch, other="sdpa")
    ids = random_ids(90, seed=4)
    manager = MemoryManager(create_policy("full"), MemoryConfig(update_every=16))
    with torch.no_grad():
        expected, plain_cache = _plain_greedy(plain, ids, steps=10)
    got = _managed_greedy(hooked, manager, ids, steps=10)
    for step, (a, b) in enumerate(zip(expected, got, strict=True)):
        assert (a - b).abs().max().item() <= 1e-5, f"{arch} step {step}"
    layers = manager.cache.layers
    types = [layer.layer_type for layer in layers]
    assert types == list(getattr(plain.config, "layer_types", None) or ["sliding_attention"] * len(layers))
    for ours, theirs in zip(layers, plain_cache.layers, strict=True):
        per_token = ours.bytes_per_token() * ours.keys.shape[1]
        theirs_bytes = theirs.keys.nbytes + theirs.values.nbytes
        if ours.layer_type == "sliding_attention":  # transformers keeps window - 1 between passes, we the window
            assert ours.held().max() == WINDOW and ours.positions.min() == 100 - WINDOW
            assert theirs_bytes <= ours.nbytes() <= theirs_bytes + per_token
        else:
            assert ours.nbytes() == theirs_bytes
    stats = manager.stats()
    assert stats.by_layer_type["sliding_attention"]["final_kept"] == WINDOW
    assert stats.as_dict()["sliding_attention/final_kept"] == WINDOW
    if arch == "gemma3":
        assert stats.by_layer_type["full_attention"] == pytest.approx(
            {"layers": 1, "mean_kept": stats.by_layer_type["full_attention"]["mean_kept"], "final_kept": 100,
             "final_kv_bytes": layers[3].nbytes()})
        assert stats.by_layer_type["full_attention"]["mean_kept"] > stats.by_layer_type["sliding_attention"]["mean_kept"]


@pytest.mark.parametrize("arch", ARCHS)
def test_evicting_equals_masking_on_sliding_and_full_layers(arch):
    HIDDEN.clear()
    HIDDEN.update({(0, 0): [1, 5, 9], (0, 1): [2], (1, 1): [0, 12, 15]})
    if arch == "gemma3":  # layer 3 is the full-attention layer
        HIDDEN.update({(3, 0): [3, 4], (3, 1): [7]})
    reference, hooked = tiny_pair(arch, other="masked_reference")
    ids = random_ids(60, seed=12)
    manager = MemoryManager(_ScriptedPolicy(), MemoryConfig(update_every=16))
    with torch.no_grad():
        ref_cache = DynamicCache()  # full layers: the reference masks the window itself
        expected = [reference(input_ids=ids[:, a:b], cache=ref_cache).logits[:, -1]
                    for a, b in manager.chunk_bounds(ids.shape[1])]
        for _ in range(30):  # decode on, past the window of the evicted tokens
            expected.append(reference(input_ids=expected[-1].argmax(-1, keepdim=True), cache=ref_cache).logits[:, -1])
        manager.new_cache()
        got = [manager.forward(hooked, ids[:, a:b]) for a, b in manager.chunk_bounds(ids.shape[1])]
        for _ in range(30):
            got.append(manager.forward(hooked, got[-1].argmax(-1, keepdim=True)))
    for step, (a, b) in enumerate(zip(expected, got, strict=True)):
        assert (a - b).abs().max().item() <= 1e-5, f"{arch} step {step}"
    layer0 = manager.cache.layers[0]
    assert layer0.held().max() <= WINDOW  # out-of-window tokens are gone, evicted ones too
    assert (layer0.positions[layer0.valid] >= 90 - WINDOW).all()


@pytest.mark.parametrize("budget", [8, 40])
def test_budget_applies_to_sliding_layers_only_below_the_window(budget):
    _, hooked = tiny_pair("gemma3")
    policy = create_policy("h2o")
    scored = []
    policy.score = lambda view, real=policy.score: scored.append(view.layer) or real(view)
    manager = MemoryManager(policy, MemoryConfig(update_every=16, budget=budget))
    _managed_greedy(hooked, manager, random_ids(96, seed=5), steps=0)
    manager.forward(hooked, random_ids(1, seed=6))  # runs the update due at T = 96
    sliding, full = manager.cache.layers[0], manager.cache.layers[3]
    assert full.held().tolist() == [[budget + 1] * 2]  # + the decoded token
    # below the window the budget binds; at or above it the layer keeps its whole window
    assert sliding.held().tolist() == [[min(budget, WINDOW - 1) + 1] * 2]
    assert (sliding.positions[sliding.valid] > 96 - WINDOW).all()
    # a budget at or above the window leaves nothing to choose: sliding layers are not even scored
    assert set(scored) == ({0, 1, 2, 3} if budget < WINDOW else {3})
