"""Prompts sized in the model's own tokens: a haystack of filler units with needles at chosen depths.

A prompt is ``prefix + haystack + suffix``. The haystack is ``n`` filler units (sentences, JSON pairs) with
needles inserted at fractional depths (0 = before the first unit, 1 = after the last). :func:`fit` finds the
``n`` whose prompt comes closest to the target length, counting tokens with the tokenizer itself, so the
length is exact up to half a filler unit whatever the tokenizer: 2-3 tokens for filler sentences, about 35
SmolLM2 tokens for the UUID pairs of ``kv_retrieval``.

Tokens are counted as the language adapter encodes a prompt without a chat template
(``len(tokenizer(text).input_ids)``); the chat template adds a few more tokens around it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# The classic passkey filler (Mohtashami & Jaggi, 2023), also RULER's "noise" haystack; one unit per sentence.
NOISE = ("The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again.")


def count_tokens(tokenizer: Any, text: str) -> int:
    """Tokens of ``text`` as the adapter encodes it (``tokenizer(text).input_ids``, special tokens included)."""
    return len(tokenizer(text).input_ids)


def require_tokenizer(context_tokenizer: Any, task: str) -> Any:
    if context_tokenizer is None:
        raise ValueError(f"task {task!r} sizes prompts in the model's tokens: TaskContext.tokenizer is required")
    return context_tokenizer


@dataclass(frozen=True)
class Haystack:
    """A haystack layout: filler units (``unit(i)`` is the i-th, ``sep`` joins them) and needles.

    Attributes:
        prefix / suffix: text before and after the haystack (instruction, question).
        unit: the i-th filler unit (i >= 0), deterministic.
        needles: ``(depth, text)`` pairs; depth in [0, 1] is where the needle goes among the units.
        sep: separator between units and needles.
    """

    prefix: str
    suffix: str
    unit: Callable[[int], str]
    needles: Sequence[tuple[float, str]] = ()
    sep: str = " "

    def render(self, n: int) -> str:
        """The prompt with ``n`` filler units."""
        slots: list[list[str]] = [[] for _ in range(n + 1)]  # slots[k]: needles placed before unit k
        for depth, text in self.needles:
            slots[round(depth * n)].append(text)
        parts: list[str] = []
        for k in range(n + 1):
            parts.extend(slots[k])
            if k < n:
                parts.append(self.unit(k))
        return self.prefix + self.sep.join(parts) + self.suffix


@dataclass(frozen=True)
class Fitted:
    """A prompt of ``n_tokens`` tokens built from ``n_units`` filler units; ``suffix`` is the text after the
    haystack (the question), when known."""

    prompt: str
    n_units: int
    n_tokens: int
    suffix: str = ""


def fit(tokenizer: Any, target: int, render: Callable[[int], str], unit_tokens: float,
        max_rounds: int = 8) -> Fitted:
    """The ``n`` whose ``count_tokens(render(n))`` is closest to ``target`` (ties: the shorter prompt).

    ``unit_tokens`` is the approximate number of tokens per filler unit (for the Newton steps). Raises
    ``ValueError`` when even ``render(0)`` (instruction, needles, question) is longer than ``target``.
    """
    empty = count_tokens(tokenizer, render(0))
    if empty > target:
        raise ValueError(f"target length {target} tokens is below the {empty} tokens the prompt needs "
                         "without any filler")
    unit_tokens = max(unit_tokens, 1e-3)
    seen: dict[int, int] = {0: empty}

    def measure(n: int) -> int:
        if n not in seen:
            seen[n] = count_tokens(tokenizer, render(n))
        return seen[n]

    n = max(0, int((target - empty) / unit_tokens))
    for _ in range(max_rounds):
        step = int((target - measure(n)) / unit_tokens)
        if step == 0:
            break
        n = max(0, n + step)
    while n > 0 and measure(n) > target:  # step down to fit under the target
        n -= 1
    for _ in range(64):  # and up while the next unit still fits (bounded, in case units add no tokens)
        if measure(n + 1) > target:
            break
        n += 1
    if measure(n + 1) - target < target - measure(n):  # one unit more is closer: overshoot by < half a unit
        n += 1
    return Fitted(render(n), n, measure(n))


def tokens_per_unit(tokenizer: Any, unit: Callable[[int], str], sep: str = " ", sample: int = 50) -> float:
    """Average tokens added by one filler unit, measured on the first ``sample`` units."""
    one = count_tokens(tokenizer, unit(0))
    many = count_tokens(tokenizer, sep.join(unit(i) for i in range(sample)))
    return max((many - one) / (sample - 1), 1e-3)
