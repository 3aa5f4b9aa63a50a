"""The offline stand-in: a tiny random-weight Mistral with the real Mistral v3 tokenizer.

It lets every self-hosting code path run with no hub, no GPU and no key: it is built on the spot
(seeded, so the same seed gives the same weights), saved in the course cache, and loaded through
the very same ``AutoTokenizer`` / ``AutoModelForCausalLM.from_pretrained`` calls as
``mistralai/Mistral-7B-Instruct-v0.3``. Its text is meaningless — only the plumbing is real.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import helpers.memory as memory

from ..labels import STANDIN
from ..labels import STANDIN_BANNER as BANNER
from ..load_errors import ModelLoadError
from ..memory import CONFIG_PREFIX
from ..paths import TOKENIZER_FILE, atomic_folder, cache_dir, tokenizer_source
from ..selfhost import chat_template
from ..settings import resolve_device

STANDIN_VERSION = 1  # bump when the recipe below changes, so old caches are rebuilt
DEFAULT_SEED = 0

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


# The one table of Mistral tokenizers the course ships: version → (SentencePiece file in mistral-common,
# the Instruct chat template that goes with it, vocabulary size)
TOKENIZERS = {
    "v3": (TOKENIZER_FILE, "mistral_v3", 32768),  # Mistral-7B-Instruct-v0.3
    "v1": ("tokenizer.model.v1", "mistral_v1", 32000),  # v0.1/v0.2: strict role alternation
}


def tokenizer_for_vocab(vocab_size: int) -> str | None:
    """The shipped tokenizer version with this vocabulary size ('v3', 'v1'), or None."""
    return next((v for v, (_, _, n) in TOKENIZERS.items() if n == vocab_size), None)


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
            f"Offline stand-in built by helpers.course.standin (recipe v{STANDIN_VERSION}, seed {seed}).\n"
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


# ---------------------------------------------------------------- real shapes, random weights (07, make gpu-check)
def config_fingerprint(cfg) -> str:
    """A short hash of a config's contents: a checkpoint built from it is reused only while the config is unchanged.

    `transformers_version` is left out, so upgrading transformers does not rebuild a 14 GB checkpoint.
    """
    data = cfg.to_dict()
    data.pop("transformers_version", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:10]


def config_checkpoint(name: str, seed: int = 0, device: str = "auto", cfg: Any = None) -> Path:
    """A real-size checkpoint with RANDOM weights from a config (`config:mistral-7b-instruct-v0.3`), built once.

    Memory and speed do not depend on the weight values, so this measures the real architecture with no
    download. The weights are initialised on the GPU when there is one (seconds for 7B), saved in the course
    cache under the config's name and a hash of its contents (an edited config, or another one with the same
    folder name, gets its own checkpoint), then loaded by the same `from_pretrained` path as real weights.
    Its text is meaningless.
    """
    import torch
    from transformers import AutoModelForCausalLM

    cfg = cfg if cfg is not None else memory.load_config(name.removeprefix(CONFIG_PREFIX))
    label = Path(name.removeprefix(CONFIG_PREFIX)).name
    if tokenizer_for_vocab(cfg.vocab_size) is None:
        raise ModelLoadError(f"No shipped Mistral tokenizer has {cfg.vocab_size:,} tokens (have 32,000 and 32,768): "
                             "use a config with one of those vocab sizes.")
    target = cache_dir() / f"config-{label}-{config_fingerprint(cfg)}-seed{seed}"
    if (target / "config.json").exists() and (target / ".complete").exists():
        return target
    device = resolve_device(device)
    need = memory.weight_bytes(cfg, "fp16")
    free = memory.free_memory_bytes(device)
    if free is not None and need > free:
        raise ModelLoadError(
            f"Building random weights for {label} needs {memory.human(need)} on {device}, "
            f"but only {memory.human(free)} is free. Build it on a GPU machine, or use LOCAL_MODEL='{STANDIN}'."
        )
    disk_free = shutil.disk_usage(cache_dir()).free
    if need * 1.05 > disk_free:
        raise ModelLoadError(f"Saving {label} needs {memory.human(need)} of disk in {cache_dir()}, "
                             f"only {memory.human(disk_free)} free. Set COURSE_CACHE_DIR to a bigger disk.")
    shutil.rmtree(target, ignore_errors=True)  # a half-built folder (no .complete) from an interrupted run
    try:
        with atomic_folder(target) as tmp:
            torch.manual_seed(seed)
            with torch.device(device):
                lm = AutoModelForCausalLM.from_config(cfg, dtype=torch.float16)
            lm.generation_config.do_sample = False
            lm.save_pretrained(tmp, max_shard_size="2GB")
            del lm
            # the real tokenizer of that vocab size, with its own chat template (v0.1's: strict alternation)
            build_mistral_tokenizer(tmp, tokenizer_for_vocab(cfg.vocab_size),
                                    model_max_length=getattr(cfg, "max_position_embeddings", None))
            (tmp / "RANDOM_WEIGHTS.md").write_text(
                f"Random weights (seed {seed}) in the shape of {label} (config {config_fingerprint(cfg)}), built by "
                "helpers.course.standin.config_checkpoint to measure memory and speed. Its text is meaningless.\n")
            (tmp / ".complete").write_text("ok\n")
    finally:
        if device == "cuda":
            torch.cuda.empty_cache()
    return target
