"""Language episodes answered in ragged batches (``namm run --batch-size``).

Each episode keeps its own :class:`~namm_suite.manager.MemoryManager` and reads its prompt in the same
chunks, with the same protocol calls between them, as :func:`~.language.prefill_prompt` alone; the chunks
of every episode go through the model together (:func:`~namm_suite.row_batch.forward_rows`), the episodes
with fewer chunks starting later so that all prompts end on the same pass. The answers are then decoded
greedily together, one token per episode and pass, each episode stopping at its own end-of-sequence token or
its own ``max_new_tokens``. Every episode's answer and memory statistics are the ones it gets alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import torch

from namm_suite.manager import MemoryManager
from namm_suite.row_batch import forward_rows
from namm_suite.tasks.base import Episode

from .base import Prediction
from .language import LanguageAdapter, next_token, prompt_parts, stop_token_ids


@torch.no_grad()
def run_batch(adapter: LanguageAdapter, episodes: list[Episode], managers: list[MemoryManager]) -> list[Prediction]:
    """Answer ``episodes[i]`` under ``managers[i]``, all in one batch, as :meth:`LanguageAdapter.run` answers
    each alone. A prediction's ``prefill_seconds`` and ``decode_seconds`` are its share of the batch's
    (the batch's time / the number of episodes)."""
    if len(episodes) != len(managers) or not episodes:
        raise ValueError(f"run_batch needs one manager per episode, got {len(episodes)} episodes and "
                         f"{len(managers)} managers")
    parts = [adapter.encode_parts(episode.inputs, episode.inputs.get("chat", True)) for episode in episodes]
    for context, question in parts:
        if not context.shape[1] + question.shape[1]:
            raise ValueError("the prompt is empty (0 tokens): give some text")
        adapter.positions.check(context.shape[1] + question.shape[1])
    start = time.perf_counter()
    logits = read_prompts(adapter.model, managers, parts)
    prefill = time.perf_counter() - start
    stop_ids = stop_token_ids(adapter.model, adapter.tokenizer)
    answers = decode_rows(adapter.model, managers, logits, [episode.max_new_tokens for episode in episodes],
                          stop_ids)
    decode, n = time.perf_counter() - start - prefill, len(episodes)
    return [adapter.prediction(manager, new, context, question, prefill / n, decode / n)
            for manager, new, (context, question) in zip(managers, answers, parts, strict=True)]


def read_prompts(model: torch.nn.Module, managers: list[MemoryManager],
                 parts: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    """Read every prompt (``parts[i]``: context and question ids ``[1, C]``, ``[1, Q]``) under its
    manager's protocol; returns each prompt's last-position logits ``[V]``."""
    plans = [_prompt_chunks(manager, *part) for manager, part in zip(managers, parts, strict=True)]
    passes = max(count for count, _ in plans)
    logits: list[torch.Tensor | None] = [None] * len(plans)
    for step in range(passes):
        rows = [i for i, (count, _) in enumerate(plans) if step >= passes - count]
        pieces = [next(plans[i][1]) for i in rows]
        for i, row_logits in zip(rows, forward_rows(model, [managers[i] for i in rows], pieces), strict=True):
            logits[i] = row_logits
    for _, chunks in plans:  # the protocol's calls after the last chunk (freeze, answer_start)
        if next(chunks, None) is not None:
            raise RuntimeError("a prompt had more chunks than planned")
    return logits


def _prompt_chunks(manager: MemoryManager, context: torch.Tensor,
                   question: torch.Tensor) -> tuple[int, Iterator[torch.Tensor]]:
    """``(count, chunks)``: the 1-D id chunks ``manager`` reads a prompt in, alone, and how many; the
    iterator makes the protocol's calls (new cache, freeze, answer start) where :func:`prefill_prompt` does."""
    protocol = manager.config.protocol
    compressed, rest = prompt_parts(protocol, context, question)
    bounds = [manager.chunk_bounds(compressed.shape[1]), manager.chunk_bounds(rest.shape[1], compressed.shape[1])]

    def chunks() -> Iterator[torch.Tensor]:
        manager.new_cache(context_tokens=compressed.shape[1])
        for piece, pieces in zip((compressed, rest), bounds, strict=True):
            yield from (piece[0, start:end] for start, end in pieces)
            if piece is compressed and protocol != "scheduled":
                manager.freeze()
        manager.answer_start()

    return sum(map(len, bounds)), chunks()


def decode_rows(model: torch.nn.Module, managers: list[MemoryManager], logits: list[torch.Tensor],
                limits: list[int], stop_ids: set[int]) -> list[list[int]]:
    """Greedy answers (token ids) after each row's prompt logits ``[V]``: one token per unfinished row and
    pass, row ``i`` stopping at an id of ``stop_ids`` or after ``limits[i]`` tokens."""
    answers: list[list[int]] = [[] for _ in managers]
    tokens = [next_token(row, answers[i], limits[i], stop_ids) for i, row in enumerate(logits)]
    while rows := [i for i, token in enumerate(tokens) if token is not None]:
        pieces = [torch.tensor([tokens[i]], device=logits[i].device) for i in rows]
        out = forward_rows(model, [managers[i] for i in rows], pieces)
        tokens = [None] * len(managers)
        for i, row in zip(rows, out, strict=True):
            tokens[i] = next_token(row, answers[i], limits[i], stop_ids)
    return answers
