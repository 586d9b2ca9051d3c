"""Evicting a token must equal masking it out of attention; the cache must really shrink."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from transformers import AttentionInterface, DynamicCache

from namm_suite.manager import MemoryConfig, MemoryManager
from namm_suite.policies.base import MemoryPolicy, PolicyView

from .tiny_models import random_ids, tiny_pair

# (layer, kv_head) -> positions hidden from every query at position >= HIDE_FROM
HIDDEN: dict[tuple[int, int], list[int]] = {}
HIDE_FROM = 16


def _masked_reference(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Plain eager attention over a DynamicCache with HIDDEN tokens masked for late queries."""
    _, q_heads, q_len, _ = query.shape
    groups = q_heads // key.shape[1]
    n_keys = key.shape[-2]
    q_pos = kwargs["position_ids"][0]
    k_pos = torch.arange(n_keys, device=query.device)
    visible = (k_pos[None, :] <= q_pos[:, None]).expand(key.shape[1], q_len, n_keys).clone()
    for (layer, head), positions in HIDDEN.items():
        if layer == module.layer_idx:
            late = q_pos >= HIDE_FROM
            for p in positions:
                visible[head, late, p] = False
    if kwargs.get("sliding_window") is not None:
        visible &= (q_pos[:, None] - k_pos[None, :] < kwargs["sliding_window"])[None]
    visible = visible.repeat_interleave(groups, dim=0)[None]
    scores = (query @ key.repeat_interleave(groups, 1).transpose(2, 3)) * scaling
    probs = torch.softmax(scores.masked_fill(~visible, float("-inf")), -1)
    out = probs @ value.repeat_interleave(groups, 1)
    return out.transpose(1, 2).contiguous(), probs


AttentionInterface.register("masked_reference", _masked_reference)


@dataclass
class _ScriptedPolicy(MemoryPolicy):
    """Evicts HIDDEN tokens at the first update (T = HIDE_FROM) and nothing afterwards."""

    uses_budget = False
    calls: list[int] = field(default_factory=list)

    def select(self, view: PolicyView) -> torch.Tensor:
        self.calls.append(view.layer)
        keep = view.valid.clone()
        if int(view.positions.max()) < HIDE_FROM:  # the first update
            for (layer, head), positions in HIDDEN.items():
                if layer == view.layer:
                    for p in positions:
                        keep[0, head] &= view.positions[0, head] != p
        return keep


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_evicting_equals_masking(arch):
    HIDDEN.clear()
    HIDDEN.update({(0, 0): [1, 5, 9], (1, 0): [0, 2, 3, 15]})
    if arch == "llama":  # two KV heads with different evictions (GQA 4 query / 2 KV heads)
        HIDDEN.update({(0, 1): [4, 7], (1, 1): [12]})
    reference, hooked = tiny_pair(arch, other="masked_reference")
    ids = random_ids(40, seed=11)
    manager = MemoryManager(_ScriptedPolicy(), MemoryConfig(update_every=16))
    manager.new_cache()
    with torch.no_grad():
        ref_cache = DynamicCache(config=reference.config)
        ref_logits = []
        for a, b in manager.chunk_bounds(ids.shape[1]):
            ref_logits.append(reference(input_ids=ids[:, a:b], cache=ref_cache).logits[:, -1])
        got = []
        for a, b in manager.chunk_bounds(ids.shape[1]):
            got.append(manager.forward(hooked, ids[:, a:b]))
        token = got[-1].argmax(-1, keepdim=True)
        for _ in range(5):  # decoding after eviction: positions must stay absolute
            ref_logits.append(reference(input_ids=token, cache=ref_cache).logits[:, -1])
            got.append(manager.forward(hooked, token))
            token = got[-1].argmax(-1, keepdim=True)
    for step, (a, b) in enumerate(zip(ref_logits, got, strict=True)):
        assert (a - b).abs().max().item() <= 1e-5, f"step {step}"
    layer0 = manager.cache.layers[0]
    assert layer0.seen == 45
    held = layer0.held()[0].tolist()
    if arch == "llama":
        assert held == [45 - 3, 45 - 2]
    # evicted positions are gone, the others kept in order
    pos = layer0.positions[0, 0][layer0.valid[0, 0]].tolist()
    assert pos == [p for p in range(45) if p not in (1, 5, 9)]


def test_compaction_frees_memory_and_reports_padding():
    _, hooked = tiny_pair("llama")
    manager = MemoryManager(_ScriptedPolicy(), MemoryConfig(update_every=16))
    HIDDEN.clear()
    HIDDEN.update({(0, 0): list(range(10)), (1, 0): list(range(12)), (1, 1): list(range(12))})
    manager.new_cache()
    with torch.no_grad():
        manager.forward(hooked, random_ids(16))
        before = manager.cache.nbytes()
        manager.forward(hooked, random_ids(1, seed=2))  # triggers the update at T = 16
    cache = manager.cache
    layer0, layer1 = cache.layers
    assert layer0.keys.shape[-2] == 17 and layer0.held()[0].tolist() == [7, 17]
    assert layer1.keys.shape[-2] == 5 and layer1.held()[0].tolist() == [5, 5]
    per_token = layer0.bytes_per_token()
    assert cache.ideal_nbytes() == (7 + 17 + 5 + 5) * per_token
    assert cache.nbytes() == (17 * 2 + 5 * 2) * per_token  # layer 0 pads head 0 from 7 to 17
    assert cache.nbytes() < before + 2 * 2 * per_token
    stats = manager.stats()
    assert stats.padding_overhead == pytest.approx(44 / 34 - 1)
    assert stats.final_kv_bytes == cache.nbytes()
