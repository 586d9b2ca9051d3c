"""Fitting a long prompt into the model's window by cutting its middle, as LongBench and InfiniteBench do,
saying so on stderr, and finding the context and the answer cue in a filled template."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


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


def warn_truncated(task: str, truncated: list[int], total: int, budget: int) -> None:
    """Say on stderr (a logging warning) how many of ``total`` prompts were cut to ``budget`` tokens;
    ``truncated`` holds the original token count of each cut prompt. Silent when none was cut."""
    if truncated:
        logger.warning("%s: %d of %d prompts were longer than %d tokens (the window set by --length minus the "
                       "answer budget) and were cut in the middle, losing %d tokens in all (up to %d in one)",
                       task, len(truncated), total, budget, sum(truncated) - budget * len(truncated),
                       max(truncated) - budget)


def answer_cue(template: str) -> str:
    """The answer cue that ends a prompt template (``"Answer:"``, ``"Summary:"``, ``"回答："``, ``"The answer
    is: "``): its last line when that holds no field and ends with a colon; "" otherwise. Chat layouts put
    it after the assistant header, where a chat model then answers briefly (kvpress, LongBench pipelines)."""
    last = template.rsplit("\n", 1)[-1]
    return last if last.strip() and "{" not in last and last.rstrip().endswith((":", "：")) else ""


def prompt_layout(template: str, fill: Callable[[str], str], prompt: str, field: str = "context"
                  ) -> dict[str, str]:
    """Where the context lies in ``prompt``, the filled (and possibly middle-cut) ``template``: the episode
    inputs ``context`` (the context as it appears in the prompt; the prompt up to its end is what a
    ``context`` protocol compresses) and ``cue`` (see :func:`answer_cue`). ``fill`` fills a part of the
    template. Empty when the template has no ``{field}`` or the cut reached the text around it."""
    marker = "{" + field + "}"
    if template.count(marker) != 1:
        return {}
    before, after = template.split(marker)
    head, tail = fill(before), fill(after)
    if len(head) + len(tail) > len(prompt) or not prompt.startswith(head) or not prompt.endswith(tail):
        return {}
    return {"context": prompt[len(head):len(prompt) - len(tail)], "cue": answer_cue(template)}
