"""Passkey retrieval (Mohtashami & Jaggi, 2023): a number hidden at a chosen depth in filler text.

Prompts are generated offline from a seed and sized in the model's own tokens, so the same seed gives the
same episode for a given tokenizer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

FILLER = ("The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ")
QUESTION = "What is the pass key? Answer with the number only."


@dataclass(frozen=True)
class PasskeyEpisode:
    """One passkey prompt. ``depth`` in [0, 1] is where the needle sits (0 = start of the filler)."""

    prompt: str
    answer: str
    depth: float
    seed: int


def make_passkey(tokenizer, n_tokens: int, depth: float, seed: int) -> PasskeyEpisode:
    """A passkey prompt of about ``n_tokens`` tokens of ``tokenizer`` with a 5-digit key at ``depth``."""
    if n_tokens < 64:
        raise ValueError(f"passkey: n_tokens must be >= 64, got {n_tokens}")
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"passkey: depth must be in [0, 1], got {depth}")
    key = str(random.Random(seed).randint(10000, 99999))
    needle = f" The pass key is {key}. Remember it. {key} is the pass key. "
    fixed = len(tokenizer(needle + QUESTION).input_ids)
    per_filler = len(tokenizer(FILLER * 8).input_ids) / 8
    repeats = max(1, round((n_tokens - fixed) / per_filler))
    sentences = [FILLER] * repeats
    cut = round(depth * repeats)
    prompt = "".join(sentences[:cut]) + needle + "".join(sentences[cut:]) + "\n" + QUESTION
    return PasskeyEpisode(prompt=prompt, answer=key, depth=depth, seed=seed)


def passkey_score(prediction: str, answer: str) -> float:
    """1.0 when the answer's digits appear in the prediction, else 0.0."""
    return float(answer in prediction)
