"""Where the suite keeps what it makes once and reuses: converted models, generated video clips.

Shared by ``adapters/`` (converted checkpoints) and ``tasks/`` (clip folders), so neither imports the other
for it; ``namm doctor`` checks that the folder is writable.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of the suite's cache: ``$NAMM_CACHE_DIR``, else ``$XDG_CACHE_HOME/namm-suite`` or
    ``~/.cache/namm-suite``."""
    if os.environ.get("NAMM_CACHE_DIR"):
        return Path(os.environ["NAMM_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "namm-suite"
