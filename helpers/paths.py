"""Where the course's files are: the checkout's data/ folder and the cache of what it builds (every notebook)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where the course keeps what it builds (stand-in weights, embedding caches): $COURSE_CACHE_DIR or ~/.cache."""
    root = os.environ.get("COURSE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "mistral-two-paths")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def repo_root() -> Path:
    """The course checkout (where data/ lives), or the installed package's parent."""
    return Path(__file__).resolve().parent.parent


def data_path(name: str) -> Path:
    """Path of a file the course ships in data/, with a clear error when it is missing."""
    path = repo_root() / "data" / name
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing. Run the notebooks from a full checkout of the course "
            "(git clone …), not from a copied notebook alone."
        )
    return path
