"""BAM scorer, parameters, selection rules and the NAMM policy (docs/namm-spec.md §4–§6, §10)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from namm_suite.namm import (
    CONTEXT,
    N_BINS,
    NUM_PARAMS,
    BamParams,
    bam_scores,
    pool_scores,
    select_kappa,
    select_threshold,
    update_ema,
)
from namm_suite.policies.base import POLICIES, PolicyView
from namm_suite.policies.namm import NammPolicy


def random_params(seed: int, scale: float = 0.3) -> BamParams:
    g = torch.Generator().manual_seed(seed)
    return BamParams().from_vector(torch.randn(NUM_PARAMS, generator=g) * scale)


def reference_scores(x: np.ndarray, valid: np.ndarray, p: BamParams) -> np.ndarray:
    """Token-by-token float64 BAM with a −∞ backward mask (docs/namm-spec.md §4)."""
    w = {k: v.detach().double().numpy() for k, v in p.named_parameters()}
    n = x.shape[0]
    z = x @ w["W_a"] + w["b_a"]
    q, k, v = z[:, :32], z[:, 32:64], z[:, 64:]
    out = np.full(n, np.nan)
    for i in np.flatnonzero(valid):
        js = [j for j in range(i, n) if valid[j]]
        logits = np.array([q[i] @ k[j] / np.sqrt(32) for j in js])
        probs = np.exp(logits - logits.max())
        o = (probs / probs.sum()) @ v[js]
        y = o @ w["W_b"] + w["b_b"]
        x_mod = x[i] * (1 + y[25:]) + y[:25]
        out[i] = x_mod @ w["w_c"] + w["b_c"]
    return out


# --- §10.7 parameters ---------------------------------------------------------------------------


def test_param_count_and_vector_round_trip():
    p = BamParams()
    assert sum(t.numel() for t in p.parameters()) == NUM_PARAMS == 4172
    assert all(t.dtype == torch.float32 for t in p.parameters())
    assert torch.count_nonzero(p.to_vector()) == 0
    theta = torch.randn(NUM_PARAMS, generator=torch.Generator().manual_seed(0))
    assert torch.equal(BamParams().from_vector(theta).to_vector(), theta)


@pytest.mark.parametrize(
    ("offset", "name", "index"),
    [
        (3 * 96 + 70, "W_a", (3, 70)),
        (2399, "W_a", (24, 95)),
        (2400 + 5, "b_a", (5,)),
        (2496 + 7 * 50 + 49, "W_b", (7, 49)),
        (4095, "W_b", (31, 49)),
        (4096 + 3, "b_b", (3,)),
        (4146 + 24, "w_c", (24,)),
        (4171, "b_c", ()),
    ],
)
def test_vector_offsets_follow_spec_table(offset, name, index):
    theta = torch.zeros(NUM_PARAMS)
    theta[offset] = 2.5
    p = BamParams().from_vector(theta)
    for other, tensor in p.named_parameters():
        assert float(tensor.abs().sum()) == (2.5 if other == name else 0.0)
    assert float(getattr(p, name)[index]) == 2.5
    with torch.no_grad():
        getattr(p, name)[index] = -1.0
    assert float(p.to_vector()[offset]) == -1.0


def test_bad_vectors_are_refused_with_sizes_and_dtypes():
    p = BamParams()
    with pytest.raises(ValueError, match=r"4172.*\(4171,\)"):
        p.from_vector(torch.zeros(4171))
    with pytest.raises(ValueError, match=r"torch\.int64"):
        p.from_vector(torch.zeros(NUM_PARAMS, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\(2, 2086\)"):
        p.from_vector(torch.zeros(2, 2086))
    with pytest.raises(ValueError, match="finite"):
        p.from_vector(torch.full((NUM_PARAMS,), float("nan")))
    p.from_vector(np.ones(NUM_PARAMS))  # float64 numpy (CMA-ES) is accepted and stored as float32
    assert p.W_a.dtype == torch.float32 and float(p.b_c) == 1.0


# --- §4 scorer ----------------------------------------------------------------------------------


def test_scores_match_loop_reference():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 9, 25, generator=g)
    valid = torch.ones(2, 3, 9, dtype=torch.bool)
    valid[1, 2, 6:] = False
    valid[0, 1, 3] = False
    p = random_params(2)
    scores = bam_scores(x, valid, p)
    assert scores.shape == (2, 3, 9) and scores.dtype == torch.float32
    for b in range(2):
        for h in range(3):
            ref = reference_scores(x[b, h].double().numpy(), valid[b, h].numpy(), p)
            keep = valid[b, h].numpy()
            np.testing.assert_allclose(scores[b, h].numpy()[keep], ref[keep], rtol=1e-4, atol=1e-4)


def test_backward_mask_perturbing_token_j_changes_only_older_scores():  # §10.4
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 10, 25, generator=g)
    valid = torch.ones(1, 2, 10, dtype=torch.bool)
    p = random_params(4)
    j = 5
    bumped = x.clone()
    bumped[..., j, :] += torch.randn(25, generator=g)
    before, after = bam_scores(x, valid, p), bam_scores(bumped, valid, p)
    assert torch.equal(before[..., j + 1 :], after[..., j + 1 :])  # newer tokens i > j untouched
    assert (before[..., j] - after[..., j]).abs().min() > 1e-4  # j itself changes
    assert (before[..., :j] - after[..., :j]).abs().min() > 1e-7  # older tokens attend to j


def test_padding_is_never_attended_to_and_all_masked_rows_stay_finite():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 1, 8, 25, generator=g) * 50
    valid = torch.tensor([[[True] * 5 + [False] * 3]])
    p = random_params(6, scale=3.0)
    base = bam_scores(x, valid, p)
    bumped = x.clone()
    bumped[..., 5:, :] = torch.randn(3, 25, generator=g) * 1e3
    assert torch.equal(bam_scores(bumped, valid, p)[..., :5], base[..., :5])
    assert torch.isfinite(base).all()
    assert torch.isfinite(bam_scores(x, torch.zeros_like(valid), p)).all()


def test_theta_zero_scores_exactly_zero_and_evicts_nothing():  # §10.5
    x = torch.randn(2, 4, 30, 25) * 10
    valid = torch.rand(2, 4, 30) > 0.2
    scores = bam_scores(x, valid, BamParams())
    assert torch.count_nonzero(scores) == 0
    assert torch.equal(select_kappa(scores, valid), valid)
    assert torch.equal(select_threshold(scores, valid), valid)


# --- §10.6 selection on a hand-made matrix ------------------------------------------------------

T, F = True, False
SCORES = torch.tensor(
    [
        [
            [0.5, -1.0, 0.0, 2.0, -0.5, -3.0],  # c = 4 (0.5, 0.0, 2.0, newest)
            [-2.0, -0.1, -0.3, -4.0, 1.0, -1.0],  # c = 2 (1.0, newest)
            [-1.0, -2.0, 3.0, -0.5, 9.0, 9.0],  # slots 4, 5 are padding; newest is slot 3; c = 2
        ]
    ]
)
VALID = torch.tensor([[[T] * 6, [T] * 6, [T, T, T, T, F, F]]])


def test_kappa_selection_hand_made():
    keep = select_kappa(SCORES, VALID)
    expected = torch.tensor([[[T, F, T, T, F, T], [F, T, T, F, T, T], [T, T, T, T, F, F]]])
    assert torch.equal(keep, expected)  # κ = 4; newest kept at −3.0; head 1 keeps −0.1 and −0.3


def test_kappa_selection_with_cap_and_one_kappa_per_batch_row():
    capped = select_kappa(SCORES, VALID, cap=3)
    assert torch.equal(capped, torch.tensor([[[T, F, F, T, F, T], [F, T, F, F, T, T], [T, F, T, T, F, F]]]))
    other_row = torch.tensor([[[1.0, 1.0, 1.0, 1.0, 1.0, -1.0]] * 3])  # c = 6 in every head
    keep = select_kappa(torch.cat([SCORES, other_row]), torch.cat([VALID, VALID]))
    # batched population members: row 1's κ = 6 must not leak into row 0 (κ = 4 there)
    assert torch.equal(keep[0], select_kappa(SCORES, VALID)[0])
    assert torch.equal(keep[1], VALID[0])


def test_threshold_selection_hand_made():
    keep = select_threshold(SCORES, VALID)
    assert torch.equal(keep, torch.tensor([[[T, F, T, T, F, T], [F, F, F, F, T, T], [F, F, T, T, F, F]]]))
    only_newest = select_threshold(SCORES, VALID, cap=1)
    assert torch.equal(only_newest, torch.tensor([[[F] * 5 + [T], [F] * 5 + [T], [F, F, F, T, F, F]]]))
    with pytest.raises(ValueError, match="cap"):
        select_threshold(SCORES, VALID, cap=0)


@st.composite
def score_matrices(draw):
    b, h, n = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 10))
    values = st.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])  # ties and exact zeros
    scores = torch.tensor(draw(st.lists(values, min_size=b * h * n, max_size=b * h * n))).view(b, h, n)
    valid = torch.tensor(draw(st.lists(st.booleans(), min_size=b * h * n, max_size=b * h * n))).view(b, h, n)
    cap = draw(st.none() | st.integers(1, 12))
    return scores, valid, cap


def _newest(valid: torch.Tensor) -> torch.Tensor:
    newest = torch.zeros_like(valid)
    for idx in np.ndindex(*valid.shape[:-1]):
        slots = torch.nonzero(valid[idx]).flatten()
        if len(slots):
            newest[idx][slots[-1]] = True
    return newest


@settings(max_examples=150, deadline=None)
@given(score_matrices())
def test_selection_properties(case):
    scores, valid, cap = case
    newest = _newest(valid)
    wanted = ((scores >= 0) & valid) | newest
    counts = wanted.sum(-1)
    kappa = counts.amax(-1, keepdim=True)  # one κ per batch row
    kappa = kappa if cap is None else kappa.clamp_max(cap)
    n_valid = valid.sum(-1)
    ranked = scores.masked_fill(newest, float("inf"))
    for rule, expected_count in (
        (select_kappa, n_valid.clamp_max(kappa)),
        (select_threshold, counts if cap is None else counts.clamp_max(cap)),
    ):
        keep = rule(scores, valid, cap)
        assert keep.shape == valid.shape and keep.dtype == torch.bool
        assert not (keep & ~valid).any()  # keep ⊆ valid
        assert (keep | ~newest).all()  # newest always kept
        assert torch.equal(keep.sum(-1), expected_count)
        for idx in np.ndindex(*valid.shape[:-1]):  # a kept token never ranks below a dropped valid one
            dropped = valid[idx] & ~keep[idx]
            if keep[idx].any() and dropped.any():
                assert ranked[idx][keep[idx]].min() >= ranked[idx][dropped].max()
    if cap is None:
        assert torch.equal(select_threshold(scores, valid), wanted)


# --- the policy ---------------------------------------------------------------------------------


def make_view(seed: int, heads: int = 3, slots: int = 40, rows: int = 32, budget: int | None = None):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([slots, slots - 7, slots - 2][:heads])
    valid = (torch.arange(slots)[None, :] < lengths[:, None])[None]
    positions = torch.where(valid, torch.arange(slots) * 3, -1)
    attn = torch.softmax(torch.randn(1, heads, rows, slots, generator=g), -1) * valid[:, :, None, :]
    state = {
        "namm_ema": torch.rand(1, heads, slots, N_BINS, generator=g),
        "namm_ctx": torch.rand(1, heads, slots, CONTEXT, generator=g),
    }
    return PolicyView(
        layer=0,
        attn=attn,
        keys=torch.zeros(1, heads, slots, 4),
        values=torch.zeros(1, heads, slots, 4),
        positions=positions,
        valid=valid,
        num_new=16,
        budget=budget,
        state=state,
    )


def test_policy_is_registered_and_documented():
    assert POLICIES.get("namm") is NammPolicy
    assert NammPolicy.needs_attention and not NammPolicy.uses_budget
    assert NammPolicy.token_state == {"namm_ema": (17,), "namm_ctx": (16,)}
    assert "Neural Attention Memory Model" in NammPolicy.__doc__.splitlines()[0]
    with pytest.raises(ValueError, match="'kappa', 'threshold'"):
        NammPolicy(selection="topk")


def test_policy_theta_zero_keeps_all_valid_and_writes_state():
    view = make_view(0)
    old_ema, old_ctx = view.state["namm_ema"].clone(), view.state["namm_ctx"].clone()
    policy = NammPolicy(collect_stats=True)
    keep = policy.select(view)
    assert torch.equal(keep, view.valid)
    ema, ctx = view.state["namm_ema"], view.state["namm_ctx"]
    assert ema.shape == (1, 3, 40, 17) and ctx.shape == (1, 3, 40, 16)
    expected_ema, expected_ctx = update_ema(view.attn, old_ema, old_ctx, 16)
    valid = view.valid
    assert torch.equal(ema[valid], expected_ema[valid]) and torch.equal(ctx[valid], expected_ctx[valid])
    assert not torch.equal(ema[valid], old_ema[valid])
    assert float(ema[~valid].abs().sum()) == 0.0 and float(ema[valid].abs().sum()) > 0
    assert policy.stats.count == int(valid.sum())
    torch.testing.assert_close(policy.stats.mean, ema[valid].double().mean(0).float())


def test_policy_chunk_invariance_through_state():
    attn = torch.softmax(
        torch.randn(1, 2, 64, 64).masked_fill(~torch.ones(64, 64, dtype=torch.bool).tril(), float("-inf")), -1
    )
    pos = torch.arange(64).expand(1, 2, 64)

    def view(rows, slots, state):
        return PolicyView(
            layer=0,
            attn=attn[..., rows, :slots],
            keys=torch.zeros(1, 2, slots, 1),
            values=torch.zeros(1, 2, slots, 1),
            positions=pos[..., :slots],
            valid=torch.ones(1, 2, slots, dtype=torch.bool),
            num_new=32,
            budget=None,
            state=state,
        )

    policy = NammPolicy()
    state = {"namm_ema": torch.zeros(1, 2, 32, 17), "namm_ctx": torch.zeros(1, 2, 32, 16)}
    assert policy.select(view(slice(0, 32), 32, state)).all()
    state = {k: torch.cat([v, torch.zeros_like(v)], dim=-2) for k, v in state.items()}  # cache appends zeros
    policy.select(view(slice(32, 64), 64, state))
    once = {"namm_ema": torch.zeros(1, 2, 64, 17), "namm_ctx": torch.zeros(1, 2, 64, 16)}
    one_view = view(slice(0, 64), 64, once)
    one_view.num_new = 64
    policy.select(one_view)
    torch.testing.assert_close(state["namm_ema"], once["namm_ema"], rtol=0, atol=1e-6)


def test_policy_kappa_is_rectangular_and_threshold_ragged():
    theta = torch.randn(NUM_PARAMS, generator=torch.Generator().manual_seed(0)) * 0.1
    kappa, threshold = NammPolicy(), NammPolicy(selection="threshold")
    kappa.set_vector(theta)
    threshold.set_vector(theta)
    assert torch.equal(kappa.vector(), threshold.vector())
    keep_k, keep_t = kappa.select(make_view(1)), threshold.select(make_view(1))
    counts_k, counts_t = keep_k.sum(-1).flatten(), keep_t.sum(-1).flatten()
    valid_counts = make_view(1).valid.sum(-1).flatten()
    kappa_value = int(counts_k.max())
    assert torch.equal(counts_k, valid_counts.clamp_max(kappa_value))
    assert not (keep_t & ~keep_k).any()  # threshold keeps a subset
    assert (counts_t < counts_k).any() and 0 < kappa_value < 40  # it really evicts, and frees more
    capped = kappa.select(make_view(1, budget=5))
    assert (capped.sum(-1) == 5).all()


def test_policy_keeps_protected_tokens_in_kappa_count():
    theta = torch.randn(NUM_PARAMS, generator=torch.Generator().manual_seed(1)) * 0.1  # keeps ~10 of 40
    policy = NammPolicy()
    policy.set_vector(theta)
    plain = policy.select(make_view(1))
    view = make_view(1)
    view.protected = torch.zeros_like(view.valid)
    view.protected[..., :4] = True  # four sink tokens in every head
    keep = policy.select(view)
    assert keep[..., :4].all() and not plain[..., :4].all()
    counts = keep.sum(-1).flatten()
    assert (counts == counts[0]).all() and counts[0] >= plain.sum(-1).max()  # still rectangular


def test_policy_needs_attention_and_state():
    view = make_view(2)
    view.attn = None
    with pytest.raises(ValueError, match="attention"):
        NammPolicy().select(view)
    view = make_view(2)
    del view.state["namm_ctx"]
    with pytest.raises(ValueError, match="namm_ctx"):
        NammPolicy().select(view)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(1, 30), st.sampled_from([1, 3, 5, 7]), st.integers(0, 2**31 - 1))
def test_pool_scores_is_the_best_valid_neighbour(heads, n, width, seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(2, heads, n, generator=g)
    valid = torch.rand(2, heads, n, generator=g) > 0.3
    pooled = pool_scores(scores, valid, width)
    half = width // 2
    for b in range(2):
        for h in range(heads):
            for i in range(n):
                if not valid[b, h, i]:  # padding keeps its own (meaningless) score
                    assert pooled[b, h, i] == scores[b, h, i]
                    continue
                window = [j for j in range(max(0, i - half), min(n, i + half + 1)) if valid[b, h, j]]
                assert pooled[b, h, i] == max(scores[b, h, j] for j in window)
    assert torch.equal(pool_scores(scores, valid, 1), scores)


def test_policy_kernel_keeps_the_neighbours_of_a_kept_token():
    theta = torch.randn(NUM_PARAMS, generator=torch.Generator().manual_seed(0)) * 0.1
    plain, pooled = NammPolicy(), NammPolicy(kernel=5)
    plain.set_vector(theta)
    pooled.set_vector(theta)
    keep_plain, keep_pooled = plain.select(make_view(1, budget=6)), pooled.select(make_view(1, budget=6))
    assert (keep_pooled.sum(-1) == 6).all()

    def longest_run(keep: torch.Tensor) -> int:  # consecutive kept slots, the newest (always kept) left out
        newest = torch.where(keep, torch.arange(keep.shape[-1]), -1).argmax()
        best = run = 0
        for i, kept in enumerate(keep.tolist()):
            run = run + 1 if kept and i != newest else 0
            best = max(best, run)
        return best

    # the best token's score spreads to the two slots either side of it, and all five tie for the top
    assert all(longest_run(keep_pooled[0, h]) >= 3 for h in range(3))
    assert not all(longest_run(keep_plain[0, h]) >= 3 for h in range(3))


def test_policy_gamma_reaches_the_features():
    view_of = lambda: make_view(3)
    spec, fast = NammPolicy(), NammPolicy(gamma=0.9)
    first, second = view_of(), view_of()
    spec.select(first)
    fast.select(second)
    expected, _ = update_ema(view_of().attn, view_of().state["namm_ema"], view_of().state["namm_ctx"], 16, 0.9)
    valid = view_of().valid[..., None]
    torch.testing.assert_close(second.state["namm_ema"], expected.masked_fill(~valid, 0.0))
    assert not torch.allclose(first.state["namm_ema"], second.state["namm_ema"])
