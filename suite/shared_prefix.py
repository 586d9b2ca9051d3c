"""Read the compressed part of a prompt once for every policy of a one-shot protocol.

Under ``--protocol context|query-aware --evict once`` nothing is evicted while the compressed part of the
prompt is read: the model's cache after it, and the attention rows every policy reads, are the same for
every policy and cache size. A sweep therefore reads that part once per episode (:class:`SharedPrefix`,
recording every attention row when any policy reads attention) and starts each (policy, cache size) cell
from a copy (:meth:`MemoryManager.start_from`): the one eviction, the question (``context`` protocol) and
the answer are then each cell's own. The attention output never depends on what is recorded (it always
comes from SDPA), so a cell's answer and memory statistics equal those of running it alone
(tests/test_shared_prefix.py). What a policy computes at that first update from the shared rows alone is
computed once too: the cells share a scratch dict there (``PolicyView.prefix_memo``), in which the NAMM keeps
its features, which depend on neither θ nor the cache size. Only its timings differ: ``extra["shared_prefill_seconds"]`` is the shared
read, counted in every cell's ``prefill_seconds`` and ``wall_seconds``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import torch

from .manager import MemoryConfig, MemoryManager
from .policies.base import MemoryPolicy, PolicyView


@dataclass
class _ReadOnly(MemoryPolicy):
    """The prefix's stand-in policy: asked for nothing but which attention rows to record (all, or none)."""

    name: str = "shared-prefix"
    reads_attention: bool = True
    budget_rule = "none"

    def __post_init__(self) -> None:
        self.needs_attention = self.reads_attention

    def select(self, view: PolicyView) -> torch.Tensor:
        raise RuntimeError("a shared prefix never runs a memory update")


@dataclass
class SharedPrefix:
    """The compressed part of one prompt, read once.

    Attributes:
        manager: the manager that read it (no update run, not frozen); cells start from copies of it.
        logits: ``[1, V]`` last-position logits of what was read.
        seconds: wall time of the read.
        parts: what the adapter needs to finish the prompt in each cell (e.g. the question's ids).
    """

    manager: MemoryManager
    logits: torch.Tensor
    seconds: float
    parts: Any = None

    @classmethod
    def read(cls, config: MemoryConfig, reads_attention: bool, reader, parts: Any = None) -> SharedPrefix:
        """Read a prefix under ``config``'s protocol (its budget is dropped: nothing is evicted) with
        ``reader(manager) -> logits``; ``reads_attention``: record every attention row (some cell's policy
        reads them)."""
        if not config.one_shot:
            raise ValueError(f"protocol {config.protocol!r} with evict={config.evict!r} evicts while the prompt "
                             "is read: its prefix cannot be shared")
        plain = dataclasses.replace(config, budget=None, budget_fraction=None)
        manager = MemoryManager(_ReadOnly(reads_attention=reads_attention), plain)
        start = time.perf_counter()
        logits = reader(manager)  # one-shot row buffers are allocated once, at the compressed part's size
        return cls(manager, logits, time.perf_counter() - start, parts)

    def release(self) -> None:
        """Free the prefix's cache and attention rows now (call when its last cell has started)."""
        self.manager.release()
