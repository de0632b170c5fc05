"""Where sdeval keeps its caches."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$SDEVAL_CACHE_DIR, else $XDG_CACHE_HOME/sdeval, else ~/.cache/sdeval."""
    if env := os.environ.get("SDEVAL_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sdeval"
