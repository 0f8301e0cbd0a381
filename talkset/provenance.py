"""Versions of the installed packages, read from their metadata (``importlib.metadata``).

Shard metadata and model descriptions record what actually ran, not a literal that can go stale.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import metadata


@lru_cache(maxsize=None)
def version(distribution: str) -> str:
    """The installed version of ``distribution`` (e.g. ``"ultralytics"``), or ``"not installed"``."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"
