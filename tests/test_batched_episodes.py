"""Episodes answered in ragged batches (namm run --batch-size) equal the same episodes one at a time:
answers, stops (own end-of-sequence token, own answer budget), kept tokens, every memory statistic, rows."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from namm_suite.adapters.language import LanguageAdapter, greedy_decode, prefill_prompt
from namm_suite.manager import MemoryConfig, MemoryManager
from namm_suite.results import read_rows
from namm_suite.row_batch import forward_rows
from namm_suite.runner import SweepConfig, run_sweep
from namm_suite.tasks import TASKS, TaskContext

from .fake_sweep import FakeAdapter
from .test_protocols import evicting_policy, held_positions
from .tiny_models import random_ids, tiny_model

POLICIES = ["full", "h2o", "snapkv", "tova", "namm"]
PROTOCOLS = [("scheduled", "schedule"), ("context", "schedule"), ("query-aware", "once")]
TIMINGS = {"update_seconds"}


@pytest.fixture(scope="module")
def adapter(tiny_checkpoint):
    return LanguageAdapter.from_pretrained(str(tiny_checkpoint))


@pytest.fixture(scope="module")
def episodes(adapter):
    """Four passkey episodes of different lengths (different remainders modulo update_every) and answer
    budgets; the first stops at an end-of-sequence token (see ``stop_early``)."""
    task = TASKS.get("passkey")()
    made = [task.episodes(TaskContext(tokenizer=adapter.tokenizer, length=length, seed=1, limit=1))[0]
            for length in (230, 90, 170, 301)]
    return [dataclasses.replace(episode, max_new_tokens=budget) for episode, budget in zip(made, (9, 5, 3, 8))]


@pytest.fixture
def stop_early(adapter, episodes):
    """Make the third token the full cache answers to episode 0 an end-of-sequence token (restored after)."""
    manager = MemoryManager(evicting_policy("full"), MemoryConfig(update_every=32))
    context, question = adapter.encode_parts(episodes[0].inputs)
    logits = prefill_prompt(manager, adapter.model, context, question)
    stop = greedy_decode(adapter.model, adapter.tokenizer, manager, logits, 3)[2]
    config = adapter.model.generation_config
    saved = config.eos_token_id
    config.eos_token_id = [saved, stop]
    yield stop
    config.eos_token_id = saved


def memory(name: str, protocol: str, evict: str) -> MemoryConfig:
    """A relative budget (each episode's own number of tokens) for budgeted policies."""
    return MemoryConfig(update_every=32, budget_fraction=None if name in ("full", "namm") else 0.3,
                        protocol=protocol, evict=evict)


def untimed(stats) -> dict:
    return {k: v for k, v in stats.as_dict().items() if k not in TIMINGS}


@pytest.mark.parametrize(("protocol", "evict"), PROTOCOLS)
def test_a_ragged_batch_equals_each_episode_alone(adapter, episodes, stop_early, protocol, evict):
    lengths = {sum(part.shape[1] for part in adapter.encode_parts(e.inputs)) % 32 for e in episodes}
    assert len(lengths) == len(episodes), "the episodes must differ modulo update_every"
    kept = {}
    for name in POLICIES:
        alone_managers = [MemoryManager(evicting_policy(name), memory(name, protocol, evict)) for _ in episodes]
        alone = [adapter.run(episode, manager) for episode, manager in zip(episodes, alone_managers)]
        managers = [MemoryManager(evicting_policy(name), memory(name, protocol, evict)) for _ in episodes]
        batch = adapter.run_batch(episodes, managers)
        for b, (got, expected) in enumerate(zip(batch, alone, strict=True)):
            where = f"{name} episode {b}"
            assert got.output == expected.output, where
            assert got.extra["new_tokens"] == expected.extra["new_tokens"], where
            assert untimed(got.stats) == untimed(expected.stats), where
            assert held_positions(managers[b]) == held_positions(alone_managers[b]), where
        kept[name] = [held_positions(m) for m in alone_managers]
        if name == "h2o":  # the relative budget is each episode's own
            assert len({stats.budget_tokens for stats in (p.stats for p in alone)}) == len(episodes)
        if name == "full":  # one answer stops at its end-of-sequence token, another at its own budget
            new = [p.extra["new_tokens"] for p in alone]
            assert new[0] == 2 and any(n == e.max_new_tokens for n, e in zip(new, episodes)), new
    assert len({str(held) for held in kept.values()}) == len(POLICIES), "the policies must keep differently"


def test_forward_rows_equals_each_row_alone_on_every_architecture():
    for arch in ("llama", "qwen2", "gpt2", "gemma3"):  # GQA, MQA, learned positions, sliding windows
        model = tiny_model(arch)
        chunks = [list(random_ids(n, seed=i)[0].split(16)) for i, n in enumerate((70, 45, 101))]  # 16s, then less

        def manager():
            started = MemoryManager(evicting_policy("h2o"), MemoryConfig(update_every=16, budget=20))
            started.new_cache()
            return started

        alone = []
        for row in chunks:
            own = manager()
            alone.append([own.forward(model, chunk[None])[0] for chunk in row])
        managers = [manager() for _ in chunks]
        for step in range(max(map(len, chunks))):
            rows = [b for b, row in enumerate(chunks) if step < len(row)]
            logits = forward_rows(model, [managers[b] for b in rows], [chunks[b][step] for b in rows])
            for b, got in zip(rows, logits, strict=True):
                torch.testing.assert_close(got, alone[b][step], atol=1e-5, rtol=1e-5, msg=f"{arch} row {b}")
        assert all(m.stats().n_updates > 0 for m in managers), arch


def test_a_batched_sweep_writes_the_rows_of_one_at_a_time(adapter, tiny_checkpoint, tmp_path):
    namm = evicting_policy("namm")
    namm.save(tmp_path / "random_namm")
    base = {"tasks": ["prose_qa_multi"], "policies": POLICIES, "cache_sizes": ["30%"], "model": str(tiny_checkpoint),
            "length": 200, "limit": 4, "update_every": 32, "namm_checkpoint": str(tmp_path / "random_namm")}
    rows = {}
    for size in (1, 3):
        out = tmp_path / f"batch{size}.jsonl"
        summary = run_sweep(SweepConfig(**base, batch_size=size), out, adapter=adapter)
        assert summary.written == 4 * 5 and not summary.failed
        rows[size] = {row["key"]: row for row in read_rows(out)}
    assert rows[1].keys() == rows[3].keys()
    drop = {"wall_seconds", "extra", "update_seconds", "batch_size", "config", "provenance"}
    for key, row in rows[1].items():
        batched = rows[3][key]
        assert {k: v for k, v in batched.items() if k not in drop} == {k: v for k, v in row.items() if k not in drop}
        assert row["batch_size"] == 1 and batched["config"]["batch_size"] == 3
    assert sorted(row["batch_size"] for row in rows[3].values() if row["policy"] == "h2o") == [1, 3, 3, 3]
    assert len({row["extra"]["prompt_tokens"] for row in rows[3].values()}) == 4  # ragged episodes


def test_batch_size_is_checked(tiny_checkpoint):
    with pytest.raises(ValueError, match="batch_size must be >= 1 episodes, got 0"):
        SweepConfig(tasks=["passkey"], policies=["full"], model=str(tiny_checkpoint), batch_size=0)


class BatchFails(FakeAdapter):
    """Answers one at a time; a batch with episode 2 in it fails, and so does episode 2 alone."""

    def run(self, episode, manager):
        if episode.episode_id.endswith("-2"):
            raise RuntimeError("episode 2 is broken")
        return super().run(episode, manager)

    def run_batch(self, episodes, managers):
        return [self.run(episode, manager) for episode, manager in zip(episodes, managers)]


def test_a_failing_batch_runs_its_episodes_one_at_a_time(tmp_path):
    config = {"tasks": ["toy_echo"], "policies": ["full", "h2o"], "cache_sizes": [8], "limit": 4}
    rows = {}
    for size in (1, 3):
        run_sweep(SweepConfig(**config, batch_size=size), tmp_path / f"{size}.jsonl", adapter=BatchFails())
        rows[size] = [(r["key"], r["status"], r.get("prediction"), r.get("error")) for r in
                      read_rows(tmp_path / f"{size}.jsonl")]
    assert sorted(rows[3]) == sorted(rows[1])
    assert [status for _, status, _, error in rows[3]].count("error") == 2  # episode 2 under full and h2o
    with pytest.raises(ValueError, match="adapter 'language' runs one episode at a time: give batch_size 1"):
        run_sweep(SweepConfig(**config, batch_size=2), tmp_path / "no.jsonl", adapter=FakeAdapter())
