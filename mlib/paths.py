"""Where things live: the repository, results, caches and the data mirror."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
RESULTS_DIR = REPO_ROOT / "results"

MIRROR_ENV = "MLIB_DATA_MIRROR"
CACHE_ENV = "MLIB_CACHE"


def cache_dir(*parts: str) -> Path:
    """A folder under the cache root (``$MLIB_CACHE``, default ``~/.cache/mlib``), created on demand."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mlib")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def mirror_root() -> Path | None:
    """The local data mirror named by ``$MLIB_DATA_MIRROR``, or None when it is not set."""
    value = os.environ.get(MIRROR_ENV)
    return Path(value).expanduser().resolve() if value else None
