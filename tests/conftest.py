"""Shared pytest fixtures. Tests run offline: nothing is fetched from the Hugging Face hub."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest


@pytest.fixture(scope="session")
def smollm2():
    """``(model, tokenizer)`` of the embedded SmolLM2-135M-Instruct with eager attention, loaded once.

    The first run on a machine converts the GGUF into the cache dir (~20 s); later runs load in 0.2-2 s.
    """
    from namm_suite.adapters.models import load_causal_lm

    return load_causal_lm("smollm2-135m", attn_implementation="eager")
