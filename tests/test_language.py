"""The language adapter on the embedded SmolLM2-135M (slow: loads the real model)."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from namm_suite.adapters.language import LanguageAdapter
from namm_suite.adapters.models import load_causal_lm
from namm_suite.cli import main
from namm_suite.manager import MemoryConfig, MemoryManager
from namm_suite.policies import create_policy
from namm_suite.tasks.language.synthetic import make_passkey, passkey_score

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def adapter():
    return LanguageAdapter.from_pretrained("smollm2-135m")


def test_full_policy_matches_plain_smollm2(smollm2, adapter):
    plain, tokenizer = smollm2
    ids = tokenizer("Memory is the residue of thought. " * 20, return_tensors="pt").input_ids
    manager = MemoryManager(create_policy("full"), MemoryConfig(update_every=64))
    manager.new_cache()
    with torch.no_grad():
        cache = DynamicCache(config=plain.config)
        expected = [plain(input_ids=ids, cache=cache).logits[:, -1]]
        got = [manager.forward(adapter.model, ids)]
        token = expected[0].argmax(-1, keepdim=True)
        for _ in range(4):
            expected.append(plain(input_ids=token, cache=cache).logits[:, -1])
            got.append(manager.forward(adapter.model, token))
            token = expected[-1].argmax(-1, keepdim=True)
    assert manager.stats().n_updates >= 2
    for a, b in zip(expected, got, strict=True):
        assert (a - b).abs().max().item() <= 1e-4  # 30 layers of fp32 chunked vs one-shot prefill


def test_cli_generate_answers_with_full_cache(capsys):
    assert main(["generate", "--model", "smollm2-135m", "--policy", "full",
                 "--prompt", "What is the capital of France? Answer in one word.", "--max-new-tokens", "12"]) == 0
    captured = capsys.readouterr()
    assert "Paris" in captured.out
    assert "kept per head" in captured.err


def test_small_budget_hurts_passkey_retrieval(adapter):
    episode = make_passkey(adapter.tokenizer, 600, depth=0.5, seed=3)
    full = adapter.generate(episode.prompt, MemoryManager(create_policy("full"), MemoryConfig(update_every=64)),
                            max_new_tokens=12)
    small = adapter.generate(episode.prompt, MemoryManager(create_policy("streaming"),
                                                           MemoryConfig(update_every=64, budget=64)),
                             max_new_tokens=12)
    assert passkey_score(full.output, episode.answer) == 1.0
    assert passkey_score(small.output, episode.answer) == 0.0
    assert small.stats.final_kept < full.stats.final_kept / 4
    assert small.stats.final_kv_bytes < full.stats.final_kv_bytes / 4


def test_load_causal_lm_rejects_unknown_model():
    with pytest.raises(ValueError, match="smollm2-135m"):
        load_causal_lm("no-such-model")

