"""Tiny random Hugging Face models shared by the tests (built in memory, nothing downloaded)."""

from __future__ import annotations

import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    Qwen2Config,
)

import namm_suite.attention  # noqa: F401  (registers attn_implementation="namm")

VOCAB = 97
WINDOW = 24  # sliding window of the "gemma3" and "mistral" configs


def tiny_config(arch: str):
    """A tiny config of ``arch``: 2-layer "llama" (GQA 4/2 heads), "qwen2" (GQA 4/1), "gpt2" (MHA 4),
    "mistral" (GQA 4/2, every layer a sliding window of :data:`WINDOW`) or 4-layer "gemma3" (a hybrid: three
    sliding-window layers, then one full-attention layer, as transformers' ``layer_types`` says)."""
    if arch == "llama":
        return LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)
    if arch == "qwen2":
        return Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=2048)
    if arch == "mistral":
        return MistralConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, sliding_window=WINDOW,
                             max_position_embeddings=2048)
    if arch == "gemma3":
        return Gemma3TextConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=WINDOW,
                                layer_types=["sliding_attention"] * 3 + ["full_attention"],
                                max_position_embeddings=2048)
    if arch == "gpt2":
        return GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=2048)
    raise ValueError(arch)


def tiny_pair(arch: str, seed: int = 0, other: str = "eager"):
    """The same random weights loaded twice: with ``other`` attention and with the namm hook."""
    torch.manual_seed(seed)
    # separate config objects: from_config writes the attention implementation into the config it gets
    reference = AutoModelForCausalLM.from_config(tiny_config(arch), attn_implementation=other,
                                                 dtype=torch.float32).eval()
    hooked = AutoModelForCausalLM.from_config(tiny_config(arch), attn_implementation="namm",
                                              dtype=torch.float32).eval()
    hooked.load_state_dict(reference.state_dict())
    assert reference.config._attn_implementation == other
    return reference, hooked


def tiny_model(arch: str = "llama", seed: int = 0):
    """One tiny model with the namm hook."""
    return tiny_pair(arch, seed)[1]


def random_ids(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (1, n), generator=torch.Generator().manual_seed(seed))
