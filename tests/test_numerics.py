"""Numerics: no NaN/Inf from the NAMM features, its scores or any policy under float32, float16 and
bfloat16 caches, on long inputs, with all-zero attention columns, never-attended tokens and one-token
contexts.

End to end, every registered policy runs a tiny random Llama loaded in each dtype through the manager over
a prompt 32× its budget; a wrapper around ``select`` checks, at every memory update of every layer, the
attention rows the policy sees, its scores on valid slots, its keep mask and its per-token state. Direct
property tests drive the NAMM functions with degenerate attention.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from namm_suite.manager import MemoryConfig, MemoryManager
from namm_suite.namm import NUM_PARAMS, BamParams
from namm_suite.namm.features import CONTEXT, N_BINS, build_features, update_ema
from namm_suite.namm.scorer import bam_scores
from namm_suite.namm.selection import select_kappa, select_threshold
from namm_suite.policies import POLICIES, create_policy
from namm_suite.shipped import SHIPPED_NAMM

from .single_thread import one_torch_thread  # noqa: F401  (autouse)
from .tiny_models import VOCAB, tiny_config

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
BUDGET, UPDATE_EVERY, PROMPT = 8, 16, 256
POLICY_CASES = [*POLICIES.names(), "namm-shipped", "namm-wild"]


def _policy(case: str):
    if case == "namm-shipped":
        return create_policy("namm", checkpoint=str(SHIPPED_NAMM))
    if case == "namm-wild":  # large random θ: saturating scores, everything evicted but the protected token
        policy = create_policy("namm")
        policy.set_vector(torch.randn(NUM_PARAMS, generator=torch.Generator().manual_seed(1)) * 5)
        return policy
    return create_policy(case, **({"seed": 0} if case == "random" else {}))


def _finite(name: str, tensor: torch.Tensor, where: torch.Tensor | None = None) -> None:
    values = tensor.float() if where is None else tensor.float()[where]
    assert torch.isfinite(values).all(), f"{name} has {(~torch.isfinite(values)).sum()} non-finite values"


def _checked(policy):
    """Wrap ``policy.select`` to check what goes in and comes out at every update; returns the counter."""
    real = policy.select
    calls = []

    def select(view):
        valid = view.valid
        if view.attn is not None:
            _finite("attention rows", view.attn)
        for name in ("keys", "values"):
            _finite(name, getattr(view, name), valid)
        keep = real(view)
        assert keep.dtype == torch.bool and not (keep & ~valid).any(), "padding kept"
        assert keep.any(dim=-1).all(), "a head lost every token"
        for name, state in view.state.items():
            _finite(f"state {name}", state)
        calls.append(view.layer)
        return keep

    policy.select = select
    if hasattr(policy, "score"):  # scored policies: +inf is an "always keep" mark, NaN and -inf are bugs
        real_score = policy.score

        def score(view):
            scores = real_score(view)
            on_valid = scores.float()[view.valid]
            assert not on_valid.isnan().any() and not (on_valid == float("-inf")).any(), f"{policy.name} scores"
            calls.append("scored")
            return scores

        policy.score = score
    return calls


@pytest.fixture(scope="module")
def models():
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(tiny_config("llama"), attn_implementation="namm", dtype=torch.float32)
    out = {}
    for dtype in DTYPES:
        model = AutoModelForCausalLM.from_config(tiny_config("llama"), attn_implementation="namm", dtype=dtype)
        model.load_state_dict(base.state_dict())
        out[dtype] = model.eval()
    return out


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", POLICY_CASES)
def test_every_policy_stays_finite_in_every_cache_dtype(models, dtype, case):
    policy = _policy(case)
    calls = _checked(policy)
    budget = None if case == "full" or (case.startswith("namm") and case != "namm-wild") else BUDGET
    manager = MemoryManager(policy, MemoryConfig(update_every=UPDATE_EVERY, budget=budget))
    ids = torch.randint(0, VOCAB, (1, PROMPT), generator=torch.Generator().manual_seed(2))
    manager.new_cache()
    logits = manager.forward(models[dtype], input_ids=ids)
    _finite("prompt logits", logits)
    for step in range(UPDATE_EVERY + 1):  # decode past one more memory update, one token at a time
        logits = manager.forward(models[dtype], input_ids=logits.argmax(-1, keepdim=True))
        _finite(f"logits at decode step {step}", logits)
    assert manager.cache.layers[0].keys.dtype == dtype
    for layer in manager.cache.layers:
        _finite("cached keys", layer.keys, layer.valid)
        _finite("cached values", layer.values, layer.valid)
        for name, state in layer.state.items():
            _finite(f"cached state {name}", state)
    if policy.name != "full":  # every update of both layers was checked (and scored, for scored policies)
        updates = 2 * (PROMPT + UPDATE_EVERY) // UPDATE_EVERY
        assert calls.count("scored") in (0, updates) and len(calls) - calls.count("scored") == updates
    assert all(math.isfinite(v) for v in manager.stats().as_dict().values())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", POLICY_CASES)
def test_one_token_context_is_finite(models, dtype, case):
    manager = MemoryManager(_policy(case), MemoryConfig(update_every=UPDATE_EVERY,
                                                        budget=None if case in ("full", "namm") else 1))
    manager.new_cache()
    _finite("one-token logits", manager.forward(models[dtype], input_ids=torch.tensor([[5]])))


def _attention(n_queries: int, slots: int, zero_columns: list[int], seed: int, dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    attn = torch.rand(2, n_queries, slots, generator=g)
    attn[..., zero_columns] = 0.0  # tokens nobody attends to
    attn = attn / attn.sum(-1, keepdim=True).clamp_min(1e-12)
    return attn.to(dtype)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(slots=st.integers(1, 48), rounds=st.integers(1, 3), seed=st.integers(0, 10**6),
       zero_fraction=st.floats(0, 1), valid_fraction=st.floats(0, 1), dtype=st.sampled_from(DTYPES),
       scale=st.sampled_from([0.0, 1.0, 5.0]))
def test_namm_features_and_scores_are_finite_on_degenerate_attention(slots, rounds, seed, zero_fraction,
                                                                      valid_fraction, dtype, scale):
    g = torch.Generator().manual_seed(seed)
    zero = [i for i in range(slots) if torch.rand(1, generator=g).item() < zero_fraction]
    ema, context = torch.zeros(2, slots, N_BINS), torch.zeros(2, slots, CONTEXT)
    for r in range(rounds):  # repeated updates: the EMA decays and accumulates
        attn = _attention(16 * (r + 1), slots, zero, seed + r, dtype)
        ema, context = update_ema(attn, ema, context, num_new=slots if r == 0 else 0)
        _finite("ema", ema)
        _finite("context", context)
    valid = torch.rand(2, slots, generator=g) < valid_fraction
    valid[0, -1] = True  # one head with at least its newest token; the other may be all padding
    positions = torch.arange(slots).expand(2, slots).masked_fill(~valid, -1)
    mu, var = torch.randn(N_BINS, generator=g), torch.rand(N_BINS, generator=g) * scale  # var may be 0
    features = build_features(ema, positions, valid, mu, var)
    _finite("features", features)
    params = BamParams().from_vector(torch.randn(NUM_PARAMS, generator=g) * scale)
    scores = bam_scores(features, valid, params)
    _finite("BAM scores", scores)
    for select in (select_kappa, select_threshold):
        keep = select(scores, valid, cap=4)
        assert not (keep & ~valid).any() and (keep.sum(-1) <= 4).all()
