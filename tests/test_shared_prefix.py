"""Reading a one-shot protocol's compressed part once for every policy changes no answer and no memory."""

from __future__ import annotations

import dataclasses

import pytest

from namm_suite.adapters.language import LanguageAdapter
from namm_suite.manager import MemoryConfig, MemoryManager
from namm_suite.policies import POLICIES
from namm_suite.results import read_rows
from namm_suite.runner import SweepConfig, run_sweep
from namm_suite.shared_prefix import SharedPrefix

from .test_protocols import EPISODE, evicting_policy, held_positions

TIMINGS = {"update_seconds"}


@pytest.fixture(scope="module")
def adapter(tiny_checkpoint):
    return LanguageAdapter.from_pretrained(str(tiny_checkpoint))


def config(protocol: str, name: str) -> MemoryConfig:
    return MemoryConfig(update_every=32, budget_fraction=None if name == "full" else 0.3, protocol=protocol,
                        evict="once")


def untimed(manager: MemoryManager) -> dict:
    return {k: v for k, v in manager.stats().as_dict().items() if k not in TIMINGS}


@pytest.mark.parametrize("protocol", ["context", "query-aware"])
def test_every_policy_from_a_shared_prefix_equals_running_alone(adapter, protocol):
    prefix = adapter.read_prefix(EPISODE, config(protocol, "full"), reads_attention=True)
    for name in POLICIES.names():
        alone = MemoryManager(evicting_policy(name), config(protocol, name))
        expected = adapter.run(EPISODE, alone)
        shared = MemoryManager(evicting_policy(name), config(protocol, name))
        got = adapter.run(EPISODE, shared, prefix)  # the same prefix serves every policy in turn
        assert got.output == expected.output, name
        assert held_positions(shared) == held_positions(alone), name
        assert untimed(shared) == untimed(alone), name
        assert got.extra["shared_prefill_seconds"] == prefix.seconds
        assert got.extra["prefill_seconds"] >= prefix.seconds
        # the answer's teacher-forced likelihood (scripts/likelihood_table.py) from the prefix equals it alone
        alone = MemoryManager(evicting_policy(name), config(protocol, name))
        expected = adapter.answer_likelihood(EPISODE, alone)
        shared = MemoryManager(evicting_policy(name), config(protocol, name))
        got = adapter.answer_likelihood(EPISODE, shared, prefix=prefix)
        assert got.extra["mean_logprob"] == pytest.approx(expected.extra["mean_logprob"], abs=1e-5), name
        assert held_positions(shared) == held_positions(alone), name
        assert got.extra["shared_prefill_seconds"] == prefix.seconds


def test_a_prefix_without_attention_serves_only_policies_that_read_none(adapter):
    prefix = adapter.read_prefix(EPISODE, config("query-aware", "full"), reads_attention=False)
    manager = MemoryManager(evicting_policy("keynorm"), config("query-aware", "keynorm"))
    assert adapter.run(EPISODE, manager, prefix).output == adapter.run(
        EPISODE, MemoryManager(evicting_policy("keynorm"), config("query-aware", "keynorm"))).output
    with pytest.raises(ValueError, match="'h2o' reads attention"):
        adapter.run(EPISODE, MemoryManager(evicting_policy("h2o"), config("query-aware", "h2o")), prefix)


def test_a_prefix_is_refused_where_the_protocol_evicts_while_reading(adapter):
    scheduled = MemoryConfig(update_every=32, protocol="scheduled")
    with pytest.raises(ValueError, match="'scheduled' with evict='schedule'.*cannot be shared"):
        adapter.read_prefix(EPISODE, scheduled, reads_attention=True)
    with pytest.raises(ValueError, match="cannot be shared"):
        SharedPrefix.read(dataclasses.replace(scheduled, protocol="context"), True, lambda manager: None)


def test_a_used_manager_cannot_be_a_prefix(adapter):
    used = MemoryManager(evicting_policy("h2o"), MemoryConfig(update_every=32, budget=20))
    adapter.run(EPISODE, used)  # scheduled: it evicted while reading
    with pytest.raises(ValueError, match="no memory update"):
        MemoryManager(evicting_policy("h2o"), MemoryConfig(update_every=32, budget=20)).start_from(used)


@pytest.mark.parametrize("protocol", ["context", "query-aware"])
def test_a_sweep_shares_prefixes_and_writes_the_same_rows(adapter, tiny_checkpoint, tmp_path, protocol):
    base = {"tasks": ["passkey"], "policies": ["full", "tova", "h2o", "snapkv", "keynorm", "namm"],
            "cache_sizes": ["25%", "50%"], "model": str(tiny_checkpoint), "length": 256, "limit": 2,
            "protocol": protocol, "evict": "once", "namm_cap": True, "update_every": 32}
    rows = {}
    for share in (True, False):
        out = tmp_path / f"{share}.jsonl"
        summary = run_sweep(SweepConfig(**base, share_prefix=share), out, adapter=adapter)
        assert summary.written == 2 * 12 and not summary.failed  # full, 4 × 2 sizes, namm own + 2 caps
        rows[share] = read_rows(out)
    fields = ("key", "score", "prediction", "mean_kept", "answer_kept", "context_kept", "final_kept", "peak_kept")
    assert [[r[f] for f in fields] for r in rows[True]] == [[r[f] for f in fields] for r in rows[False]]
    assert all("shared_prefill_seconds" in r["extra"] for r in rows[True])
    assert not any("shared_prefill_seconds" in r["extra"] for r in rows[False])
    assert all(r["wall_seconds"] >= r["extra"]["shared_prefill_seconds"] for r in rows[True])


def test_prefix_and_cells_hold_attention_rows_at_their_size_and_release_them(adapter):
    prefix = adapter.read_prefix(EPISODE, config("query-aware", "full"), reads_attention=True)
    n = prefix.manager.cache.seen_tokens
    for buffer in prefix.manager._attention.values():  # allocated once for the whole compressed part
        assert buffer.data.shape[2:] == (n, n) and buffer.count == n
    cell = MemoryManager(evicting_policy("snapkv"), config("query-aware", "snapkv"))
    cell.start_from(prefix.manager)
    window = cell.policy.attention_rows
    assert all(b.data.shape[2:] == (window, n) for b in cell._attention.values())
    prefix.release()
    assert prefix.manager.cache is None and not prefix.manager._attention


@pytest.mark.parametrize("protocol", ["context", "query-aware"])
def test_namm_cells_of_one_prefix_compute_its_features_once(adapter, protocol, monkeypatch):
    import namm_suite.policies.namm as namm_module

    calls = []
    real = namm_module.update_ema_from_rows
    monkeypatch.setattr(namm_module, "update_ema_from_rows", lambda *a, **k: calls.append(1) or real(*a, **k))
    prefix = adapter.read_prefix(EPISODE, config(protocol, "full"), reads_attention=True)
    layers = adapter.model.config.num_hidden_layers
    for fraction, kernel in ((0.3, 1), (0.5, 1), (0.3, 3)):  # caps and pooling: the same features
        memory = dataclasses.replace(config(protocol, "namm"), budget_fraction=fraction)
        policy, alone_policy = evicting_policy("namm"), evicting_policy("namm")
        policy.kernel = alone_policy.kernel = kernel
        alone = MemoryManager(alone_policy, memory)
        expected = adapter.run(EPISODE, alone)
        before = len(calls)
        shared = MemoryManager(policy, memory)
        got = adapter.run(EPISODE, shared, prefix)
        assert got.output == expected.output and held_positions(shared) == held_positions(alone)
        assert len(calls) - before == (layers if fraction == 0.3 and kernel == 1 else 0)
    other = evicting_policy("namm")
    other.gamma = 0.9  # other features: computed again
    before = len(calls)
    adapter.run(EPISODE, MemoryManager(other, config(protocol, "namm")), prefix)
    assert len(calls) - before == layers
