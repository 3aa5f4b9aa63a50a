"""Load open-weight models for self-hosting: one loader for the notebooks and the local endpoint.

`load_model("smollm2-135m" | "standin" | hub id | path | "config:<name>", precision=...)` returns the tokenizer and model,
loaded with `from_pretrained` exactly as for Mistral-7B-Instruct, at fp32/fp16/bf16 or quantized by
bitsandbytes (int8, nf4). Then: `generate` (chat template, pad token, attention mask), `stream`,
`tokens_per_second`, `score_text` (perplexity + top-1 next tokens) and `top1_agreement`.
`load_embedder` does the same for sentence-transformers models.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import Version

from . import memory
from .device import default_precision
from .load_errors import ModelLoadError, _load_error_kind, explain_load_error  # noqa: F401  (selfhost.ModelLoadError)
from .memory import CONFIG_PREFIX
from .settings import SMOLLM, STANDIN, cache_dir, resolve_device
from .standin import (
    atomic_folder,
    build_mistral_tokenizer,
    is_standin,
    quiet_progress,
    standin_path,
    tokenizer_for_vocab,
)

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8", "nf4")
MIN_BNB_CPU = Version("0.46")  # bitsandbytes runs 8-bit and 4-bit layers on CPU from 0.46 on

# bitsandbytes logs this on every int8 matmul when activations are fp32 (our CPU compute dtype): the int8
# kernel works in fp16 internally. True, once; as log spam it buries the notebook's output.
logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
# On CPUs with AVX512-BF16, bitsandbytes tries to fetch an optional faster 4-bit kernel from the hub and warns
# when it can't; its built-in CPU path is used instead, which is all the course needs.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


@dataclass
class LoadedModel:
    """A tokenizer + causal LM pair with what it is and where it runs."""

    model: Any
    tokenizer: Any
    name: str
    path: str
    precision: str
    device: str
    compute_dtype: str = "fp32"  # dtype of activations and of every weight bitsandbytes leaves unquantized
    load_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def is_standin(self) -> bool:
        return is_standin(self.path) or self.name == STANDIN

    @property
    def is_smollm(self) -> bool:
        """True for the offline model, SmolLM2-135M-Instruct (real weights, tiny, not Mistral)."""
        from .smollm import is_smollm

        return self.name == SMOLLM or is_smollm(self.path)

    @property
    def random_weights(self) -> bool:
        """True for the stand-in and for `config:` checkpoints: memory and speed are real, the text is not."""
        return self.is_standin or self.name.startswith(CONFIG_PREFIX)

    @property
    def label(self) -> str:
        """The model's name for measurement labels, saying when its weights are random."""
        if self.is_standin:
            return f"{self.name} (stand-in)"
        if self.is_smollm:
            return "SmolLM2-135M-Instruct"
        return f"{self.name} (random weights)" if self.random_weights else self.name

    @property
    def context_length(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 0) or 0)

    @property
    def footprint_bytes(self) -> int:
        """Parameters + buffers in bytes, as `model.get_memory_footprint()` reports them."""
        return int(self.model.get_memory_footprint())

    def estimated_bytes(self) -> int:
        """What helpers.memory predicts for this config, precision and compute dtype."""
        return memory.weight_bytes(self.model.config, self.precision, rest_dtype=self.compute_dtype)


# ---------------------------------------------------------------- precision and device choices
def _torch_dtype(name: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def bnb_support(device: str) -> tuple[bool, str]:
    """Can bitsandbytes quantize on this device? (ok, reason) — CPU needs bitsandbytes >= 0.46."""
    try:
        import bitsandbytes as bnb
    except Exception as exc:  # ImportError, or a CUDA-setup error on a broken install
        return False, f"bitsandbytes is not usable here ({type(exc).__name__}: {exc}). pip install -U bitsandbytes"
    if device == "cpu" and Version(bnb.__version__) < MIN_BNB_CPU:
        return False, (f"bitsandbytes {bnb.__version__} has no CPU kernels (8-bit/4-bit on CPU need >= 0.46): "
                       "pip install -U bitsandbytes, or run this on a CUDA GPU")
    if device == "mps":
        return False, "bitsandbytes has no Apple-GPU (mps) backend: use DEVICE='cpu' or a CUDA GPU"
    return True, f"bitsandbytes {bnb.__version__} on {device}"


def quantization_config(precision: str, device: str):
    """The BitsAndBytesConfig for int8 (LLM.int8, outlier threshold 6.0) or nf4 (double quant), else None."""
    from transformers import BitsAndBytesConfig

    compute = _torch_dtype(default_precision(device))
    if precision == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=6.0)
    if precision == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
    return None


def _check_precision_on_device(precision: str, device: str) -> None:
    if precision == "bf16" and device == "cuda":
        import torch

        from .device import native_bf16

        if not native_bf16():  # not torch.cuda.is_bf16_supported(): that counts a T4's emulated bf16 as support
            major, minor = torch.cuda.get_device_capability()
            raise ModelLoadError(
                f"{torch.cuda.get_device_name()} has no native bf16 (compute capability {major}.{minor}; bf16 needs "
                "8.0+, e.g. A100, L4, H100 — on a T4 torch would only emulate it, slowly): use precision='fp16' "
                "or 'auto'."
            )
    if precision in memory.QUANTIZED:
        ok, why = bnb_support(device)
        if not ok:
            raise ModelLoadError(f"precision={precision!r} needs bitsandbytes: {why}")


def announce(cfg) -> dict[str, object]:
    """Print which device and which model this self-hosting notebook uses, and why; return the GPU facts (05–08)."""
    from .device import gpu
    from .settings import model_label, model_note

    hw = gpu()
    print(f"device: {cfg.device} ({hw['name']}) · model: {model_label(cfg.local_model)} "
          f"(LOCAL_MODEL from {cfg.sources.get('LOCAL_MODEL', 'a parameter')})")
    if model_note(cfg.local_model):
        print("ℹ️  " + model_note(cfg.local_model))
    return hw


def pick_precision(precision: str, device: str) -> str:
    """`auto` → the device's default float dtype; an explicit choice is checked (bf16 needs native support)."""
    if precision not in PRECISIONS:
        raise ModelLoadError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}.")
    device = resolve_device(device)
    precision = default_precision(device) if precision == "auto" else precision
    _check_precision_on_device(precision, device)
    return precision


def torch_dtype(precision: str):
    """The torch dtype for a float precision name ('fp32', 'fp16', 'bf16')."""
    return _torch_dtype(precision)


# ---------------------------------------------------------------- where the weights come from
def model_path(model: str) -> str:
    """`smollm2-135m` / `standin` → their built folders; `config:<name>` → a random-weight checkpoint; else unchanged."""
    if model == SMOLLM:
        from .smollm import OfflineModelMissing, smollm_path

        try:
            return str(smollm_path())
        except OfflineModelMissing as exc:
            raise ModelLoadError(str(exc)) from exc
    if model == STANDIN:
        return str(standin_path())
    if model.startswith(CONFIG_PREFIX):
        return str(config_checkpoint(model))
    return model




def config_fingerprint(cfg) -> str:
    """A short hash of a config's contents: a checkpoint built from it is reused only while the config is unchanged.

    `transformers_version` is left out, so upgrading transformers does not rebuild a 14 GB checkpoint.
    """
    data = cfg.to_dict()
    data.pop("transformers_version", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:10]


def config_checkpoint(name: str, seed: int = 0, device: str = "auto") -> Path:
    """A real-size checkpoint with RANDOM weights from a config (`config:mistral-7b-instruct-v0.3`), built once.

    Memory and speed do not depend on the weight values, so this measures the real architecture with no
    download. The weights are initialised on the GPU when there is one (seconds for 7B), saved in the course
    cache under the config's name and a hash of its contents (an edited config, or another one with the same
    folder name, gets its own checkpoint), then loaded by the same `from_pretrained` path as real weights.
    Its text is meaningless.
    """
    import torch
    from transformers import AutoModelForCausalLM

    cfg = memory.load_config(name.removeprefix(CONFIG_PREFIX))
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
                "helpers.selfhost.config_checkpoint to measure memory and speed. Its text is meaningless.\n")
            (tmp / ".complete").write_text("ok\n")
    finally:
        if device == "cuda":
            torch.cuda.empty_cache()
    return target


def oom_message(model: str, precision: str, needed: int, free: int | None, device: str) -> str:
    """Say how much memory a load needed vs what was free, and which smaller precision to try."""
    where = device
    if device == "cuda":
        import torch

        where = f"cuda ({torch.cuda.get_device_name()})"
    have = memory.human(free) if free is not None else "an unknown amount"
    msg = f"Not enough memory to load {model} at {precision}: the weights need ≈{memory.human(needed)}, {have} is free on {where}."
    nxt = memory.smaller_precision(precision)
    if nxt:
        msg += f" Try precision='{nxt}'"
        try:
            cfg_need = memory.weight_bytes(model if model.startswith(CONFIG_PREFIX) else _config_of(model), nxt)
            msg += f" (≈{memory.human(cfg_need)})"
        except Exception:
            pass
        msg += ", free memory (restart the kernel, unload other models), or use a smaller model."
    else:
        msg += " nf4 is the smallest precision here: use a smaller model or a GPU with more memory."
    return msg


def _config_of(model: str):
    return memory.load_config(model_path(model) if model in (STANDIN, SMOLLM) else model)


def _preflight(model: str, path: str, precision: str, device: str, compute: str) -> None:
    """Refuse early, with numbers, when the weights cannot fit: better than a crash halfway through loading."""
    try:
        cfg = memory.load_config(path)
        needed = memory.weight_bytes(cfg, precision, rest_dtype=compute)
    except Exception:  # no readable config (odd repo): let from_pretrained have its say
        return
    free = memory.free_memory_bytes(device)
    if free is not None and needed > free:
        raise ModelLoadError(oom_message(model, precision, needed, free, device))


# ---------------------------------------------------------------- the loader
def load_model(model: str = SMOLLM, precision: str = "auto", device: str = "auto") -> LoadedModel:
    """Load tokenizer + model (hub id, local path, `smollm2-135m`, `standin` or `config:<name>`) at a precision, on a device."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if precision not in PRECISIONS:
        raise ModelLoadError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}.")
    device = resolve_device(device)
    if precision == "auto":
        precision = default_precision(device)
    _check_precision_on_device(precision, device)
    if model.startswith(CONFIG_PREFIX):
        try:
            memory.load_config(model)
        except FileNotFoundError as exc:
            raise ModelLoadError(str(exc)) from exc
        _preflight(model, model, precision, device, default_precision(device))
    elif model not in (STANDIN, SMOLLM) and not (Path(model).exists() or "/" in model):
        raise ModelLoadError(
            f"Unknown model {model!r}: not a local folder and not a hub id (owner/name). "
            f"Use '{SMOLLM}' offline, or e.g. 'mistralai/Mistral-7B-Instruct-v0.3' with network access."
        )
    compute = precision if precision in memory.FLOAT_PRECISIONS else default_precision(device)
    started = time.perf_counter()
    try:
        path = model_path(model)
        if not model.startswith(CONFIG_PREFIX):
            _preflight(model, path, precision, device, compute)
        kwargs: dict[str, Any] = {"dtype": _torch_dtype(compute)}
        qconfig = quantization_config(precision, device)
        if qconfig is not None:
            kwargs["quantization_config"] = qconfig
        if device == "cuda":
            kwargs["device_map"] = "auto"
        tokenizer = AutoTokenizer.from_pretrained(path)
        with quiet_progress():
            lm = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except ModelLoadError:
        raise
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if not isinstance(exc, torch.OutOfMemoryError) and "can't allocate memory" not in str(exc):
            raise explain_load_error(exc, model) from exc
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
        needed = memory.weight_bytes(_config_of(model) if not model.startswith(CONFIG_PREFIX) else model,
                                     precision, rest_dtype=compute)
        raise ModelLoadError(oom_message(model, precision, needed, memory.free_memory_bytes(device), device)) from exc
    except (OSError, ValueError) as exc:
        raise explain_load_error(exc, model) from exc
    if device != "cuda" and qconfig is None:
        lm = lm.to(device)
    lm.eval()
    if tokenizer.pad_token_id is None:
        # Mistral defines no pad token. Generation needs one; reusing EOS is the usual choice and harmless
        # at batch 1 because the attention mask tells the model which positions are real.
        tokenizer.pad_token = tokenizer.eos_token
    notes = []
    offloaded = {d for d in (getattr(lm, "hf_device_map", None) or {}).values() if d in ("cpu", "disk")}
    if device == "cuda" and offloaded:
        notes.append(f"accelerate offloaded some layers to {', '.join(sorted(offloaded))}: the GPU was too small, "
                     "generation will be very slow. Use a smaller precision.")
        log.warning(notes[-1])
    return LoadedModel(model=lm, tokenizer=tokenizer, name=model, path=str(path), precision=precision,
                       device=device, compute_dtype=compute, load_seconds=time.perf_counter() - started,
                       notes=notes)


RANDOM_WEIGHTS_BANNER = (
    "⚠️  RANDOM WEIGHTS in the real model's shape (built from its config): memory and speed are real, "
    "its text is meaningless."
)


def banner(lm: LoadedModel) -> str | None:
    """Say loudly when a model's text means nothing (stand-in or random-weight `config:` model); `announce` names the rest."""
    from . import standin

    if lm.is_standin:
        return standin.banner()
    if lm.random_weights:
        print(RANDOM_WEIGHTS_BANNER)
        return RANDOM_WEIGHTS_BANNER
    return None


def unload(lm: LoadedModel | None) -> None:
    """Free a loaded model's memory (CPU RAM and GPU) before loading the next one."""
    if lm is not None:
        lm.model = None
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    except Exception:
        pass


def memory_report(lm: LoadedModel) -> dict[str, Any]:
    """Measured footprint next to the estimate; on CUDA also what torch has allocated now and at peak."""
    out: dict[str, Any] = {
        "device": lm.device,
        "precision": lm.precision,
        "compute dtype": lm.compute_dtype,
        "footprint_bytes": lm.footprint_bytes,
        "estimated_bytes": lm.estimated_bytes(),
    }
    out["estimate error %"] = round(100 * (out["estimated_bytes"] - out["footprint_bytes"]) / out["footprint_bytes"], 3)
    if lm.device == "cuda":
        import torch

        out["cuda_allocated_bytes"] = int(torch.cuda.memory_allocated())
        out["cuda_peak_bytes"] = int(torch.cuda.max_memory_allocated())
    return out
