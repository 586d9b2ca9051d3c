"""Fitting a long prompt into the model's window by cutting its middle, as LongBench and InfiniteBench do."""

from __future__ import annotations

from typing import Any


def truncate_middle(prompt: str, tokenizer: Any, max_tokens: int) -> tuple[str, int, bool]:
    """``prompt`` cut to its first and last ``max_tokens // 2`` tokens when longer than ``max_tokens``.

    As LongBench's ``pred.py``: the prompt is tokenised whole (``tokenizer(prompt).input_ids``), and when too
    long the two halves are decoded separately (``skip_special_tokens=True``) and concatenated, keeping the
    instruction at the start and the question at the end. Returns ``(prompt, n_tokens_before, truncated)``.
    Re-tokenising the result may give a token or two more or fewer than ``2 * (max_tokens // 2)``.
    """
    if max_tokens < 2:
        raise ValueError(f"the prompt budget must be >= 2 tokens, got {max_tokens}")
    ids = list(tokenizer(prompt).input_ids)
    if len(ids) <= max_tokens:
        return prompt, len(ids), False
    half = max_tokens // 2
    head = tokenizer.decode(ids[:half], skip_special_tokens=True)
    tail = tokenizer.decode(ids[-half:], skip_special_tokens=True)
    return head + tail, len(ids), True


def prompt_budget(window: int, max_new_tokens: int, task: str) -> int:
    """Tokens left for the prompt in a ``window``-token context after the answer budget."""
    budget = window - max_new_tokens
    if budget < 2:
        raise ValueError(f"task {task!r}: TaskContext.length ({window}) must exceed the answer budget "
                         f"({max_new_tokens} new tokens)")
    return budget
