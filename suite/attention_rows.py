"""The attention rows a memory policy reads, recorded by the attention hook into preallocated buffers.

A policy declares which rows it reads (``MemoryPolicy.attention_rows``): ``1`` (the last query, TOVA),
``w`` (the last w queries, SnapKV) or ``None`` (every query since the previous update: H2O, the NAMM).
:func:`first_row_needed` tells the hook which of a pass's queries those are, so probabilities are computed
for them only; :class:`RowBuffer` holds them, one buffer per layer, allocated once per update period.
"""

from __future__ import annotations

import torch


def next_update(seen: int, update_every: int) -> int:
    """Tokens seen at the next scheduled memory update after ``seen`` tokens (``seen`` itself if due)."""
    return -(-seen // update_every) * update_every


def first_row_needed(seen: int, queries: int, limit: int | None, target: int | None) -> int | None:
    """Index of the first of the latest ``queries`` rows (tokens ``seen - queries .. seen - 1``) that a
    policy reading the last ``limit`` rows before the update at ``target`` tokens will read; ``None`` when
    it reads none of them. ``limit`` None: every row; ``target`` None (unknown): the last ``limit`` rows."""
    if limit is None:
        return 0
    if target is None:
        return max(queries - limit, 0)
    first = target - limit - (seen - queries)
    return max(first, 0) if first < queries else None


class RowBuffer:
    """The attention rows one layer recorded since its last memory update.

    ``data``: float32 ``[B, H, R, C]``, zero-filled; rows ``[0, count)`` are recorded, oldest first. A row
    recorded when the layer held K slots fills columns ``[offset, offset + K)``, ``offset`` being the slots
    the layer has dropped from its front since the update (sliding windows), so column ``offset + j`` is
    always the layer's slot ``j``; slots appended later read as zero in earlier rows.

    Args:
        like: a ``[B, H, r, K]`` tensor giving batch, heads and device.
        rows, cols: initial capacity (it grows by doubling when exceeded).
        limit: keep only the newest ``limit`` rows (``None``: all).
        target: tokens seen at the update these rows are for (``None``: unknown).
    """

    def __init__(self, like: torch.Tensor, rows: int, cols: int, limit: int | None, target: int | None) -> None:
        self.data = like.new_zeros((*like.shape[:2], max(rows, 1), max(cols, 1)), dtype=torch.float32)
        self.count = 0
        self.limit = limit
        self.target = target

    def add(self, rows: torch.Tensor, offset: int) -> None:
        """Append ``rows`` float ``[B, H, r, K]`` recorded while ``offset`` front slots were dropped."""
        if self.limit is not None:
            rows = rows[:, :, -self.limit:]
            keep = min(self.count, self.limit - rows.shape[2])
            if keep < self.count:  # forget the oldest rows
                self.data[:, :, :keep] = self.data[:, :, self.count - keep:self.count].clone()
                self.data[:, :, keep:self.count] = 0
                self.count = keep
        n, width = rows.shape[2], offset + rows.shape[3]
        if self.count + n > self.data.shape[2] or width > self.data.shape[3]:
            self._grow(self.count + n, width)
        self.data[:, :, self.count:self.count + n, offset:width] = rows
        self.count += n

    def read(self, offset: int, n_keys: int) -> torch.Tensor:
        """Float32 ``[B, H, count, n_keys]``: the recorded rows over the layer's current slots (a view)."""
        if offset + n_keys > self.data.shape[3]:
            self._grow(self.count, offset + n_keys)
        return self.data[:, :, :self.count, offset:offset + n_keys]

    def newest(self, limit: int | None, cols: int) -> RowBuffer:
        """A copy holding the newest ``limit`` recorded rows (``None``: all) over the first ``cols`` columns,
        as a buffer created with that ``limit`` and no known update target would hold them, allocated to
        size (a buffer that grew by doubling holds up to 4× the memory its rows need)."""
        keep = self.count if limit is None else min(self.count, limit)
        cols = min(cols, self.data.shape[3])
        copy = RowBuffer(self.data, keep, cols, limit, None)
        copy.data[:, :, :keep] = self.data[:, :, self.count - keep:self.count, :cols]
        copy.count = keep
        return copy

    def repeat_rows(self, rows: int) -> None:
        """Show a one-row buffer as ``rows`` identical batch rows: a read-only view (no copy), for the memory
        update that consumes the buffer right after (:meth:`MemoryManager.update`)."""
        self.data = self.data.expand(rows, *self.data.shape[1:])

    def _grow(self, rows: int, cols: int) -> None:
        old = self.data
        shape = (*old.shape[:2], max(rows, 2 * old.shape[2]), max(cols, 2 * old.shape[3]))
        self.data = old.new_zeros(shape)
        self.data[:, :, :self.count, :old.shape[3]] = old[:, :, :self.count]
