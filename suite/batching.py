"""Ragged batches: sequences of different lengths in one batched pass whose memory updates equal B
separate runs.

The memory schedule is global (an update after every ``update_every`` tokens of the batch), so a row's
updates land on its own multiples of U only if its padding before it is a whole number of update periods.
:func:`pad_rows` therefore left-pads each row by whole periods and right-pads the remainder (< U, inside
the last period, where no update follows). Padding is cached as invalid slots (never attended to by real
tokens, never kept); each row's tokens carry their own positions 0..n−1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RaggedBatch:
    """Padded rows for :meth:`namm_suite.manager.MemoryManager.forward`.

    Attributes:
        ids: int64 ``[B, T]`` token ids (``pad_id`` on padding), T a multiple of the period.
        valid: bool ``[B, T]``, False on padding.
        positions: int64 ``[B, T]`` each token's position in its own sequence (padding: 0 before the row,
            continuing after it).
        offsets: where each row's tokens start.
        lengths: each row's number of tokens.
    """

    ids: torch.Tensor
    valid: torch.Tensor
    positions: torch.Tensor
    offsets: list[int]
    lengths: list[int]

    def row(self, tensor: torch.Tensor, b: int) -> torch.Tensor:
        """Row ``b``'s own entries ``[n_b, *]`` of a per-token tensor ``[B, T, *]`` (e.g. all logits)."""
        return tensor[b, self.offsets[b]:self.offsets[b] + self.lengths[b]]


def pad_rows(sequences: list[torch.Tensor], period: int, pad_id: int = 0) -> RaggedBatch:
    """Pad 1-D id tensors to one ``[B, T]`` batch, T = the longest rounded up to ``period`` (the memory
    manager's ``update_every``): each row starts after a whole number of periods of padding and ends
    fewer than ``period`` tokens before T."""
    if not sequences or any(s.ndim != 1 or not len(s) for s in sequences):
        raise ValueError("pad_rows needs non-empty 1-D id sequences")
    if period <= 0:
        raise ValueError(f"period must be > 0, got {period}")
    total = -(-max(len(s) for s in sequences) // period) * period
    batch = len(sequences)
    ids = torch.full((batch, total), pad_id, dtype=torch.long)
    valid = torch.zeros((batch, total), dtype=torch.bool)
    positions = torch.zeros((batch, total), dtype=torch.long)
    offsets = []
    for b, seq in enumerate(sequences):
        start = (total - len(seq)) // period * period
        end = start + len(seq)
        ids[b, start:end], valid[b, start:end] = seq, True
        positions[b, start:] = torch.arange(total - start)
        offsets.append(start)
    return RaggedBatch(ids, valid, positions, offsets, [len(s) for s in sequences])
