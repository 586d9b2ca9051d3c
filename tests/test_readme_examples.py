"""The README's "Writing a policy / a task / an adapter" examples run as printed and do what they say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from namm_suite.adapters.base import ADAPTERS, create_adapter
from namm_suite.manager import MemoryConfig, MemoryManager
from namm_suite.policies import POLICIES, create_policy
from namm_suite.tasks import TASKS, Episode, TaskContext

README = Path(__file__).resolve().parent.parent / "README.md"


def example(heading: str) -> str:
    """The first python block under ``### heading`` in the README."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"### {re.escape(heading)}\n.*?```python\n(.*?)```", text, flags=re.DOTALL)
    assert match, f"README has no python example under '### {heading}'"
    return match.group(1)


@pytest.fixture
def run_example():
    """Execute README code, removing whatever it registered afterwards (other tests list every name)."""
    before = {registry: set(registry.names()) for registry in (POLICIES, TASKS, ADAPTERS)}

    def run(heading: str) -> dict:
        namespace: dict = {}
        exec(compile(example(heading), f"README:{heading}", "exec"), namespace)  # noqa: S102  (the point)
        return namespace

    yield run
    for registry, names in before.items():
        for name in set(registry.names()) - names:
            registry.unregister(name)


def test_policy_example_keeps_the_oldest_tokens(run_example, tiny_checkpoint):
    from namm_suite.adapters.models import load_causal_lm

    run_example("Writing a policy")
    model, _ = load_causal_lm(str(tiny_checkpoint), attn_implementation="namm")
    manager = MemoryManager(create_policy("oldest"), MemoryConfig(update_every=16, budget=8))
    manager.forward(model, torch.arange(5, 37)[None])  # 32 tokens: the update at T=32 runs on the next pass
    manager.forward(model, torch.tensor([[7]]))
    layer = manager.cache.layers[0]
    kept = layer.positions[layer.valid.bool()].reshape(-1, 9)  # 8 kept + the token just appended, per head
    expected = torch.tensor([0, 1, 2, 3, 4, 5, 6, 31, 32])  # 7 oldest + the protected newest, then the new one
    assert all(torch.equal(row.sort().values, expected) for row in kept)


def test_task_example_yields_and_scores_episodes(run_example):
    run_example("Writing a task")
    task = TASKS.get("echo")()
    (episode,) = task.episodes(TaskContext(tokenizer=None, length=16, seed=3))
    assert episode.episode_id == "s3-0"
    assert task.score("Banana!", episode) == 1.0 and task.score("apple", episode) == 0.0


def test_adapter_example_predicts_like_the_plain_model(run_example, tiny_checkpoint):
    run_example("Writing an adapter")
    adapter = create_adapter("next-token", str(tiny_checkpoint))
    ids = list(range(5, 45))
    episode = Episode(task="toy", episode_id="0", inputs={"ids": ids}, references=())
    manager = MemoryManager(create_policy("full"), MemoryConfig(update_every=16))
    prediction = adapter.run(episode, manager)
    with torch.no_grad():
        expected = int(adapter.model(torch.tensor([ids])).logits[0, -1].argmax())
    assert prediction.output == expected
    assert prediction.stats.tokens_seen == len(ids)
