"""Every registered policy keeps its budget exactly, protects the newest tokens and runs under generate()."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from namm_suite.manager import MemoryConfig, MemoryManager
from namm_suite.policies import POLICIES, PolicyView, create_policy, keep_top_k
from namm_suite.registry import UnknownNameError

from .tiny_models import random_ids, tiny_model

BUDGETED = [name for name in POLICIES.names() if POLICIES.get(name).uses_budget]


def test_all_eight_policies_registered():
    assert set(POLICIES.names()) == {"full", "streaming", "h2o", "keynorm", "snapkv", "tova", "random", "namm"}
    for name in POLICIES.names():
        assert POLICIES.get(name).__doc__.strip(), name


def test_unknown_policy_lists_valid_names():
    with pytest.raises(UnknownNameError, match=r"Did you mean 'h2o'.*Valid names: full, h2o") as err:
        create_policy("h20")
    assert "snapkv" in str(err.value)


@pytest.mark.parametrize("name", POLICIES.names())
def test_policy_runs_under_generate_and_keeps_budget(name):
    model = tiny_model("llama", seed=1)
    budget, update_every, protected = 12, 16, 3
    budgeted = POLICIES.get(name).uses_budget
    config = MemoryConfig(update_every=update_every, budget=budget if budgeted else None, protected=protected)
    manager = MemoryManager(create_policy(name), config)
    seen_views: list[tuple[PolicyView, torch.Tensor]] = []
    select = manager.policy.select

    def spy(view):
        keep = select(view)
        seen_views.append((view, keep))
        return keep

    manager.policy.select = spy
    cache = manager.new_cache()
    prompt = random_ids(40, seed=4)
    out = model.generate(prompt, cache=cache, max_new_tokens=26, min_new_tokens=26,
                         do_sample=False, pad_token_id=0)
    assert out.shape == (1, 66)
    # generate() feeds the prompt in one pass (T = 40), so only T = 48 and T = 64 trigger updates
    assert manager.stats().n_updates == 2
    assert len(seen_views) == 2 * model.config.num_hidden_layers
    for view, keep in seen_views:
        newest = view.positions.masked_fill(~view.valid, -1).amax(-1, keepdim=True)
        assert keep[view.positions > newest - protected].all() or not POLICIES.get(name).uses_budget
        assert not (keep & ~view.valid).any()
        counts = keep.sum(-1)
        if POLICIES.get(name).uses_budget:
            assert (counts == view.valid.sum(-1).clamp(max=budget)).all()
    held = manager.cache.layers[0].held()
    if POLICIES.get(name).uses_budget:
        assert (held == budget + 65 - 64).all()  # budget after the update at T = 64, plus one more token
    elif name in ("full", "namm"):  # the NAMM with theta = 0 scores every token 0 and keeps it
        assert (held == 65).all()
    assert cache.seen_tokens == 65


def test_budgeted_policy_needs_budget():
    with pytest.raises(ValueError, match="needs a cache budget"):
        MemoryManager(create_policy("h2o"), MemoryConfig(update_every=16))
    with pytest.raises(ValueError, match="must be > 0"):
        MemoryConfig(budget=0)


@settings(max_examples=60, deadline=None)
@given(
    heads=st.integers(1, 4),
    slots=st.integers(1, 24),
    budget=st.integers(1, 30),
    seed=st.integers(0, 10_000),
)
def test_keep_top_k_properties(heads, slots, budget, seed):
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(1, heads, slots, generator=gen)
    valid = torch.rand(1, heads, slots, generator=gen) > 0.3
    keep = keep_top_k(scores, valid, budget)
    assert keep.shape == valid.shape and keep.dtype == torch.bool
    assert not (keep & ~valid).any()
    assert torch.equal(keep.sum(-1), valid.sum(-1).clamp(max=budget))
    # every kept token scores at least as high as every evicted valid token of its head
    for h in range(heads):
        kept, dropped = scores[0, h][keep[0, h]], scores[0, h][valid[0, h] & ~keep[0, h]]
        if kept.numel() and dropped.numel():
            assert kept.min() >= dropped.max()


def test_schedule_matches_reference():
    """docs/namm-spec.md §10.9: 1000 prompt tokens + 32 generated → updates at T = 512 and 1024, 512
    queries each."""
    model = tiny_model("llama")
    policy = create_policy("full")
    policy.needs_attention = True
    rows: list[tuple[int, int]] = []
    select = policy.select

    def spy(view):
        rows.append((int(view.positions.max()) + 1, view.attn.shape[2]))
        return select(view)

    policy.select = spy
    manager = MemoryManager(policy, MemoryConfig(update_every=512, chunk_size=128))
    assert [b - a for a, b in manager.chunk_bounds(1000)] == [128] * 7 + [104]
    manager.new_cache()
    with torch.no_grad():
        logits = manager.forward(model, random_ids(1000))
        token = logits.argmax(-1, keepdim=True)
        for _ in range(32):
            token = manager.forward(model, token).argmax(-1, keepdim=True)
    n_layers = model.config.num_hidden_layers
    assert rows == [(512, 512)] * n_layers + [(1024, 512)] * n_layers


@pytest.mark.parametrize("first", [0, 37, 63, 99])
def test_logits_from_reads_the_tail_of_every_position(first: int):
    """``forward(logits_from=k)`` returns what ``all_logits`` returns from position k on, under the same
    evictions (the lm-eval bridge scores a continuation with it), and rejects a k outside the input."""
    model, ids = tiny_model("llama"), random_ids(100, seed=3)
    results = []
    for options in ({"all_logits": True}, {"logits_from": first}):
        manager = MemoryManager(create_policy("h2o"), MemoryConfig(update_every=16, budget=12))
        manager.new_cache()
        results.append((manager.forward(model, ids, **options), manager.stats()))
    (every, stats_every), (tail, stats_tail) = results
    assert tail.shape == (1, 100 - first, every.shape[-1]) and stats_tail.n_updates == stats_every.n_updates > 4
    assert torch.allclose(tail, every[:, first:], atol=1e-5, rtol=0)  # the head on fewer rows: last bits differ
    with pytest.raises(ValueError, match=r"logits_from must lie in \[0, 100\)"):
        manager.forward(model, ids, logits_from=100)
