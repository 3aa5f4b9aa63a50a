"""One index file, written safely: named arrays in an .npz, written to a temp file and renamed into place.

Used by helpers.rag (the dense index, notebooks 05 and 08) and helpers.hybrid (dense + BM25). A crash mid-save
never leaves a half-written index, and the temp files a killed save left behind are cleaned up by the next one.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import numpy as np


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_orphan_temps(path: Path, min_age_s: float = 600.0) -> list[Path]:
    """Delete temp files an earlier save of `path` left behind when it was killed before its rename.

    A temp file is named ``<name>.<pid>.<random>.tmp``: it is an orphan when that process is gone, or (no pid,
    e.g. from an older version) when it is older than `min_age_s`. A save running right now is left alone.
    """
    removed = []
    for tmp in path.parent.glob(glob_escape(path.name) + ".*.tmp"):
        parts = tmp.name[len(path.name) + 1:].split(".")
        pid = int(parts[0]) if len(parts) >= 3 and parts[0].isdigit() else None
        if pid is not None:
            orphan = pid != os.getpid() and not _pid_alive(pid)
        else:
            try:
                orphan = time.time() - tmp.stat().st_mtime > min_age_s
            except OSError:
                continue
        if orphan:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def write_npz(path: str | os.PathLike, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write `meta` (as JSON) and the named arrays to `path` atomically: temp file, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphan_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_npz(path: Path) -> tuple[Any, dict[str, np.ndarray]]:
    """(meta, arrays) from a file written by `write_npz`; raises whatever numpy or json raise on a bad file."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(bytes(data["meta"]).decode())
        arrays = {name: np.array(data[name]) for name in data.files if name != "meta"}
    return meta, arrays
