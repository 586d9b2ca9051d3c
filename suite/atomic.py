"""Atomic file writes: a temporary file in the same folder, fsync'd, then ``os.replace``d over the target,
so readers and crashes see either the old file or the new one, never half of it."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_figure_atomic(fig: Any, path: Path, **savefig_options: Any) -> None:
    """Render a matplotlib ``fig`` as PNG and write it to ``path`` atomically, then close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **savefig_options)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
