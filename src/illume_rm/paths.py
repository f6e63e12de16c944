"""Where converted weights, generated data and cached features live."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$ILLUME_RM_CACHE`` or ``~/.cache/illume-rm``."""
    root = os.environ.get("ILLUME_RM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "illume-rm")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
