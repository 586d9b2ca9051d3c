"""NAMM features: spectrogram, EMA update, recency, standardisation, statistics (docs/namm-spec.md §3, §7,
§10)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from namm_suite.namm import (
    CONTEXT,
    N_BINS,
    RunningStats,
    build_features,
    hann_window,
    recency_encoding,
    spectrogram,
    standardise,
    update_ema,
)

A_FRAME = 0.99**16


def reference_update(attn, ema, ctx, num_new, gamma=0.99):
    """Per-token loop in float64 with an explicit DFT: the recurrence form of docs/namm-spec.md §3.1–3.3."""
    n, num_slots = attn.shape
    a, n_old = gamma**16, num_slots - num_new
    m = np.arange(32)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * m / 32)
    dft = np.exp(-2j * np.pi * np.outer(np.arange(17), m) / 32)  # [17, 32]
    out_ema, out_ctx = np.zeros((num_slots, 17)), np.zeros((num_slots, 16))
    for j in range(num_slots):
        old = j < n_old
        signal = np.concatenate([ctx[j] if old else np.zeros(16), attn[:, j]])
        e = ema[j].copy() if old else np.zeros(17)
        for f in range(n // 16):
            if old or f >= (j - n_old) // 16:
                e = a * e + (1 - a) * np.abs(dft @ (window * signal[16 * f : 16 * f + 32]))
        out_ema[j], out_ctx[j] = e, signal[-16:]
    return out_ema, out_ctx


def causal_attention(num_tokens: int, heads: int, seed: int) -> torch.Tensor:
    """Softmax-like rows ``[1, heads, T, T]``: query t attends only to keys j <= t."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, heads, num_tokens, num_tokens, generator=g)
    causal = torch.ones(num_tokens, num_tokens, dtype=torch.bool).tril()
    return torch.softmax(logits.masked_fill(~causal, float("-inf")), dim=-1)


# --- §10.1 spectrogram on known signals ---------------------------------------------------------


def test_hann_window_is_periodic_and_sums_to_16():
    w = hann_window()
    expected = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(32) / 32)
    np.testing.assert_allclose(w.numpy(), expected, atol=1e-7)
    assert float(w.sum()) == pytest.approx(16.0, abs=1e-5)


@pytest.mark.parametrize("c", [0.25, 1.0, 3.0])
def test_constant_signal_has_dc_16c_and_hann_leakage_8c(c):
    spec = spectrogram(torch.full((2, 3, 64), c))  # 3 full frames
    assert spec.shape == (2, 3, 3, N_BINS)
    expected = torch.zeros(N_BINS)
    expected[0], expected[1] = 16 * c, 8 * c
    torch.testing.assert_close(spec, expected.expand_as(spec), atol=1e-5 * max(c, 1), rtol=0)


@pytest.mark.parametrize(("amp", "phase"), [(1.0, 0.0), (0.5, 0.7), (2.0, -1.3)])
def test_cosine_at_bin_4_gives_8a_and_4a_neighbours(amp, phase):
    t = torch.arange(80, dtype=torch.float64)
    signal = (amp * torch.cos(2 * math.pi * 4 * t / 32 + phase)).float()
    spec = spectrogram(signal)
    assert spec.shape == (4, N_BINS)
    expected = torch.zeros(N_BINS)
    expected[4], expected[3], expected[5] = 8 * amp, 4 * amp, 4 * amp
    torch.testing.assert_close(spec, expected.expand_as(spec), atol=2e-5 * max(amp, 1), rtol=0)


def test_spectrogram_matches_torch_stft_on_random_rows():
    x = torch.rand(2, 3, 7, 16 + 128)
    ours = spectrogram(x)
    flat = torch.stft(
        x.reshape(-1, x.shape[-1]),
        n_fft=32,
        hop_length=16,
        window=hann_window(),
        center=False,
        onesided=True,
        normalized=False,
        return_complex=True,
    ).abs()
    ref = flat.reshape(2, 3, 7, N_BINS, -1).transpose(-1, -2)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)


# --- EMA update ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "num_slots", "num_new"), [
    (64, 70, 50),  # 20 old tokens; new offsets 0..49 -> first frames 0..3 (one block)
    (608, 700, 600),  # a long update in token blocks of 256: blocks of old, mixed and new tokens
    (576, 576, 576),  # a one-shot update over a whole prompt: every block starts at its own first frame
], ids=["scheduled", "long-mixed", "one-shot"])
def test_update_matches_loop_reference_including_new_token_frames(n, num_slots, num_new):
    # non-causal random rows so that frames a new token must skip carry real signal
    g = torch.Generator().manual_seed(0)
    attn = torch.rand(2, 2, n, num_slots, generator=g)
    ema = torch.rand(2, 2, num_slots, N_BINS, generator=g)
    ctx = torch.rand(2, 2, num_slots, CONTEXT, generator=g)
    new_ema, new_ctx = update_ema(attn, ema, ctx, num_new)
    assert new_ema.dtype == torch.float32 and new_ema.shape == (2, 2, num_slots, N_BINS)
    assert new_ctx.shape == (2, 2, num_slots, CONTEXT)
    for b in range(2):
        for h in range(2):
            ref_ema, ref_ctx = reference_update(
                attn[b, h].double().numpy(), ema[b, h].double().numpy(), ctx[b, h].double().numpy(), num_new
            )
            np.testing.assert_allclose(new_ema[b, h].numpy(), ref_ema, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(new_ctx[b, h].numpy(), ref_ctx, rtol=0, atol=0)


def test_new_tokens_ignore_passed_state_and_skip_earlier_frames():
    n, num_slots = 64, 40
    attn = torch.ones(1, 1, n, num_slots)
    garbage_ema = torch.full((1, 1, num_slots, N_BINS), 123.0)
    garbage_ctx = torch.full((1, 1, num_slots, CONTEXT), 9.0)
    ema, ctx = update_ema(attn, garbage_ema, garbage_ctx, num_new=num_slots)
    # token at offset 0 sees frames 0..3: frame 0 is half zeros (context), frames 1..3 are constant
    # token at offset 35 sees only frames 2 and 3 (both fully constant 1)
    w = [(1 - A_FRAME) * A_FRAME ** (3 - f) for f in range(4)]
    assert float(ema[0, 0, 35, 0]) == pytest.approx(16 * (w[2] + w[3]), rel=1e-6)
    frame0_dc = float(hann_window()[16:].sum())
    assert float(ema[0, 0, 0, 0]) == pytest.approx(frame0_dc * w[0] + 16 * (w[1] + w[2] + w[3]), rel=1e-6)
    torch.testing.assert_close(ctx, torch.ones_like(ctx))


def test_context_is_last_16_queries():
    attn = torch.rand(1, 2, 48, 10)
    _, ctx = update_ema(attn, torch.zeros(1, 2, 10, N_BINS), torch.zeros(1, 2, 10, CONTEXT), num_new=10)
    torch.testing.assert_close(ctx, attn[..., -16:, :].transpose(-1, -2), rtol=0, atol=0)


def test_ema_closed_form_for_old_tokens():  # §10.3
    n, frames = 128, 8
    c = torch.tensor([0.1, 0.5, 1.0, 2.0]).view(1, 1, 4)
    attn = c[..., None, :].expand(2, 3, n, 4).contiguous()
    ctx = c[..., None].expand(2, 3, 4, CONTEXT).contiguous()
    prev = torch.rand(2, 3, 4, N_BINS, generator=torch.Generator().manual_seed(1))
    ema, _ = update_ema(attn, prev, ctx, num_new=0)
    s = torch.zeros(2, 3, 4, N_BINS)
    s[..., 0], s[..., 1] = 16 * c, 8 * c
    decay = A_FRAME**frames
    torch.testing.assert_close(ema, decay * prev + (1 - decay) * s, rtol=1e-6, atol=1e-6)


def test_chunk_invariance_one_update_of_256_equals_two_of_128():  # §10.2
    full = causal_attention(256, heads=2, seed=3)
    zeros = torch.zeros
    ema_once, ctx_once = update_ema(full, zeros(1, 2, 256, N_BINS), zeros(1, 2, 256, CONTEXT), 256)

    ema1, ctx1 = update_ema(full[..., :128, :128], zeros(1, 2, 128, N_BINS), zeros(1, 2, 128, CONTEXT), 128)
    # θ = 0 evicts nothing: the second update sees the 128 survivors followed by 128 new tokens
    ema_prev = torch.cat([ema1, zeros(1, 2, 128, N_BINS)], dim=-2)
    ctx_prev = torch.cat([ctx1, zeros(1, 2, 128, CONTEXT)], dim=-2)
    ema_twice, ctx_twice = update_ema(full[..., 128:, :], ema_prev, ctx_prev, 128)

    assert float(ema_once.abs().max()) > 0.01  # a real signal, not a comparison of zeros
    torch.testing.assert_close(ema_twice, ema_once, rtol=0, atol=1e-6)
    torch.testing.assert_close(ctx_twice, ctx_once, rtol=0, atol=0)


@pytest.mark.parametrize("rows", [0, 8, 40])
def test_rows_must_be_a_positive_multiple_of_16(rows):
    with pytest.raises(ValueError, match="multiple of 16"):
        update_ema(torch.zeros(1, 1, rows, 4), torch.zeros(1, 1, 4, N_BINS), torch.zeros(1, 1, 4, CONTEXT), 4)


def test_state_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match="ema must have shape"):
        update_ema(torch.zeros(1, 1, 16, 4), torch.zeros(1, 1, 5, N_BINS), torch.zeros(1, 1, 4, CONTEXT), 4)
    with pytest.raises(ValueError, match="num_new"):
        update_ema(torch.zeros(1, 1, 16, 4), torch.zeros(1, 1, 4, N_BINS), torch.zeros(1, 1, 4, CONTEXT), 5)


# --- §10.8 recency, standardisation, features -----------------------------------------------------


def test_recency_values():
    r = recency_encoding(torch.tensor([0, 100, 32768]))
    assert r.dtype == torch.float32 and r.shape == (3, 8)
    assert r[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert float(r[1, 0]) == pytest.approx(-0.5063656, abs=1e-7)
    for i in range(4):
        omega = 50000.0 ** (-i / 4)
        assert float(r[2, i]) == np.float32(math.sin(32768 * omega))  # float64 math, one rounding
        assert float(r[2, 4 + i]) == np.float32(math.cos(32768 * omega))


def test_standardise_uses_floor_on_zero_variance():
    ema = torch.tensor([[1.0] * N_BINS])
    mu = torch.full((N_BINS,), 0.5)
    var = torch.full((N_BINS,), 4.0)
    var[3] = 0.0
    out = standardise(ema, mu, var)
    assert float(out[0, 0]) == pytest.approx(0.25)
    assert float(out[0, 3]) == pytest.approx(0.5 / 1e-7, rel=1e-6)


def test_build_features_ages_per_head_and_layout():
    positions = torch.tensor([[[0, 3, 7, 9], [2, 5, 6, -1]]])  # head 1 has a padding slot
    valid = positions >= 0
    ema = torch.arange(2 * 4 * N_BINS, dtype=torch.float32).reshape(1, 2, 4, N_BINS)
    mu, var = torch.full((N_BINS,), 1.0), torch.full((N_BINS,), 4.0)
    phi = build_features(ema, positions, valid, mu, var)
    assert phi.shape == (1, 2, 4, 25) and phi.dtype == torch.float32
    ages = torch.tensor([[[9, 6, 2, 0], [4, 1, 0, 0]]])
    torch.testing.assert_close(phi[..., :8], recency_encoding(ages), rtol=0, atol=0)
    torch.testing.assert_close(phi[..., 8:], (ema - 1.0) / 2.0, rtol=0, atol=0)


# --- §10.10 statistics --------------------------------------------------------------------------


def test_running_stats_match_direct_population_moments():
    g = torch.Generator().manual_seed(4)
    chunks = [torch.randn(m, N_BINS, generator=g) * 3 + 5 for m in (1, 7, 0, 130, 33)]
    stats = RunningStats()
    for chunk in chunks:
        stats.update(chunk)
    data = torch.cat(chunks).double()
    assert stats.count == data.shape[0] == 171
    torch.testing.assert_close(stats.mean, data.mean(0).float(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stats.var, data.var(0, unbiased=False).float(), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(stats.var, data.var(0, unbiased=True).float(), rtol=1e-4)


def test_running_stats_merge_equals_sequential_updates():
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(20, N_BINS, generator=g), torch.randn(45, N_BINS, generator=g) + 2
    left, right, both = RunningStats(), RunningStats(), RunningStats()
    left.update(a)
    right.update(b)
    both.update(torch.cat([a, b]))
    left.merge(right)
    assert left.count == 65
    torch.testing.assert_close(left.mean, both.mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(left.var, both.var, rtol=1e-6, atol=1e-6)
    resumed = RunningStats.from_values(left.mean, left.var, left.count)
    assert resumed.count == 65
    with pytest.raises(ValueError, match=r"\[M, 17\]"):
        left.update(torch.zeros(3, 16))
