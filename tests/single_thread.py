"""A fixture that runs a test module's tiny models on one torch thread.

Tiny models spend their time in thread hand-offs: on a loaded 2-core machine one thread is 10-30x faster.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Set ``torch.set_num_threads(1)`` for the module that imports this fixture, then restore it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
