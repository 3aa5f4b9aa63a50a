"""How much memory a model needs, from its config alone: weights per precision, KV cache, "does it fit on a T4".

Nothing is downloaded and no weights are allocated: the model is built on PyTorch's ``meta`` device, which
records every tensor's shape and dtype but stores no data. Weight bytes are counted the way
``model.get_memory_footprint()`` counts them after loading (parameters + buffers), so the estimate can be
checked against a loaded model:

- fp32 / fp16 / bf16: every parameter at 4 / 2 / 2 bytes;
- int8 (bitsandbytes LLM.int8): the ``nn.Linear`` weights at 1 byte, everything else (embeddings, norms,
  and ``lm_head``, which bitsandbytes leaves unquantized by default) in the compute dtype;
- nf4 (bitsandbytes 4-bit): the same, with Linear weights packed two per byte (0.5 byte each).

``get_memory_footprint`` does not count bitsandbytes' quantization constants (per-row scales for int8,
per-block absmax for nf4); :func:`quant_constants_bytes` estimates them separately.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .settings import repo_root

GB = 1e9
GiB = 2**30
KiB = 2**10

BYTES_PER_PARAM: dict[str, float] = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1, "nf4": 0.5}
FLOAT_PRECISIONS = ("fp32", "fp16", "bf16")
QUANTIZED = ("int8", "nf4")
KV_DTYPES = (*FLOAT_PRECISIONS, "int8")  # the cache is stored in the compute dtype, or int8 when quantized
# A T4 is marketed as 16 GB; about 15 GB of it is visible to programs, which torch.cuda reports as 14.56 GiB
# (figure as collected for the course on 2026-11-25). A constant, so the budget can be computed without a T4;
# on a GPU, `cuda_total_gib()` gives the measured value to compare.
GPU_BUDGETS_GIB: dict[str, float] = {"T4": 14.56}
DEFAULT_OVERHEAD_GIB = 0.5  # CUDA context + activations at batch 1: a stated allowance, not a measurement
TIGHT_MARGIN_GIB = 1.0  # headroom under this "fits on paper" only: the allowance above is a guess
SMALLER = {"fp32": "fp16", "fp16": "int8", "bf16": "int8", "int8": "nf4", "nf4": None}
# `config:<name>` names a model by its config alone (random weights in its shape). Defined here, not in selfhost,
# because load_config strips it too and selfhost imports this module (not the other way round).
CONFIG_PREFIX = "config:"
# KV cache a model reserves unless the caller says how many tokens it needs: one 4k-token conversation, or several
# shorter concurrent ones (0.5 GiB for Mistral-7B at fp16).
DEFAULT_KV_TOKENS = 4096


def configs_dir() -> Path:
    """data/configs: the shipped config.json files of the real Mistral-7B checkpoints (no weights)."""
    return repo_root() / "data" / "configs"


def shipped_configs() -> list[str]:
    """Names of the configs the course ships, e.g. ['mistral-7b-instruct-v0.1', 'mistral-7b-instruct-v0.3']."""
    return sorted(p.parent.name for p in configs_dir().glob("*/config.json"))


def load_config(source: Any):
    """A transformers config from a shipped name ('mistral-7b-instruct-v0.3'), a folder, a hub id, or a model."""
    from transformers import AutoConfig, PretrainedConfig

    if isinstance(source, PretrainedConfig):
        return source
    if hasattr(source, "config") and isinstance(source.config, PretrainedConfig):
        return source.config
    text = str(source)
    text = text.removeprefix(CONFIG_PREFIX)
    shipped = configs_dir() / text
    if (shipped / "config.json").exists():
        return AutoConfig.from_pretrained(shipped)
    if os.path.isdir(text) or "/" in text:
        return AutoConfig.from_pretrained(text)
    raise FileNotFoundError(
        f"No config named {text!r}. Shipped: {shipped_configs()}; or give a folder with config.json, or a hub id."
    )


@dataclass(frozen=True)
class ParamCounts:
    """A model's parameters split the way bitsandbytes sees them."""

    total: int  # every parameter
    quantizable: int  # weights of the nn.Linear layers bitsandbytes replaces
    kept: int  # everything else: embeddings, norms, lm_head (skipped by default), biases
    buffer_bytes: int  # buffers (e.g. rotary inv_freq), counted by get_memory_footprint at their own dtype
    linear_out_features: int  # rows of the quantized weights (int8 keeps one fp32 scale per row)
    skipped: tuple[str, ...]  # modules left unquantized


def _skip_keys(model) -> list[str]:
    try:  # the very rule transformers' bitsandbytes quantizer applies
        from transformers.quantizers.base import get_keys_to_not_convert

        return list(get_keys_to_not_convert(model))
    except Exception:  # internal API moved: fall back to "leave the output embeddings alone"
        out = model.get_output_embeddings()
        return [n for n, m in model.named_modules() if out is not None and m is out]


def _skipped(name: str, keys: list[str]) -> bool:
    return any(name == k or name.startswith(k + ".") or name.endswith("." + k) for k in keys)


def model_class(config: Any):
    """The transformers auto class that loads a config: AutoModelForCausalLM for a language model, and
    AutoModelForImageTextToText for one with a vision encoder (Ministral 3: `Mistral3ForConditionalGeneration`,
    which `AutoModelForCausalLM` refuses). Both answer text-only prompts with the same `generate`."""
    import transformers

    vision = getattr(config, "vision_config", None) is not None
    return transformers.AutoModelForImageTextToText if vision else transformers.AutoModelForCausalLM


@lru_cache(maxsize=32)
def _count_cached(config_json: str) -> ParamCounts:
    import torch
    from torch import nn
    from transformers import AutoConfig

    data = json.loads(config_json)
    config = AutoConfig.for_model(**data)
    with torch.device("meta"):  # shapes only: a 7B model "built" in about a second, with no memory
        model = model_class(config).from_config(config)
    keys = _skip_keys(model)
    quantizable = rows = 0
    for name, module in model.named_modules():
        if type(module) is nn.Linear and not _skipped(name, keys):
            quantizable += module.weight.numel()
            rows += module.weight.shape[0]
    total = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return ParamCounts(total, quantizable, total - quantizable, buffers, rows, tuple(sorted(keys)))


def count_parameters(config: Any) -> ParamCounts:
    """Count a model's parameters from its config (built on the meta device: no weights, no memory)."""
    cfg = load_config(config)
    return _count_cached(cfg.to_json_string(use_diff=False))


def _check_precision(precision: str) -> None:
    if precision not in BYTES_PER_PARAM:
        raise ValueError(f"precision={precision!r}: use one of {', '.join(BYTES_PER_PARAM)}")


def weight_bytes(config: Any, precision: str, rest_dtype: str = "fp16") -> int:
    """Bytes of the weights at a precision, as `model.get_memory_footprint()` will report them.

    `rest_dtype` is the dtype of what int8/nf4 leave unquantized (embeddings, norms, lm_head): the loader
    uses fp16 on a GPU and fp32 on a CPU. It is ignored for fp32/fp16/bf16.
    """
    _check_precision(precision)
    counts = count_parameters(config)
    if precision in FLOAT_PRECISIONS:
        return int(counts.total * BYTES_PER_PARAM[precision] + counts.buffer_bytes)
    _check_precision(rest_dtype)
    quantized = counts.quantizable * BYTES_PER_PARAM[precision]
    return int(quantized + counts.kept * BYTES_PER_PARAM[rest_dtype] + counts.buffer_bytes)


def quant_constants_bytes(config: Any, precision: str, double_quant: bool = True, blocksize: int = 64) -> int:
    """Extra bytes bitsandbytes keeps beside quantized weights, which `get_memory_footprint` leaves out.

    int8: one fp32 scale per output row. nf4: one absmax per block of 64 weights — fp32, or with double
    quantization 1 byte plus one fp32 per 256 blocks.
    """
    _check_precision(precision)
    counts = count_parameters(config)
    if precision == "int8":
        return counts.linear_out_features * 4
    if precision == "nf4":
        blocks = counts.quantizable / blocksize
        return int(blocks * 1 + blocks / 256 * 4) if double_quant else int(blocks * 4)
    return 0


def kv_bytes_per_token(config: Any, dtype: str = "fp16") -> int:
    """KV-cache bytes one token adds: layers × KV heads × head dim × 2 (K and V) × bytes per value."""
    cfg = load_config(config).get_text_config()  # a vision-language model's cache is its language model's
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    if dtype not in KV_DTYPES:
        raise ValueError(f"KV-cache dtype {dtype!r}: use one of {', '.join(KV_DTYPES)}")
    return int(cfg.num_hidden_layers * kv_heads * head_dim * 2 * BYTES_PER_PARAM[dtype])


def kv_cache_bytes(config: Any, tokens: int, dtype: str = "fp16", batch: int = 1) -> int:
    """KV-cache bytes for a context of `tokens` (capped at the sliding window when the model has one)."""
    cfg = load_config(config)
    window = getattr(cfg, "sliding_window", None)
    kept = min(tokens, window) if window else tokens
    return kv_bytes_per_token(cfg, dtype) * kept * batch


@dataclass(frozen=True)
class Fit:
    """Does a model fit a GPU: weights + KV cache + overhead against the memory available."""

    precision: str
    context_tokens: int
    weights_bytes: int
    kv_cache_bytes: int
    overhead_bytes: int
    budget_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.overhead_bytes

    @property
    def headroom_bytes(self) -> int:
        """What is left (negative: how much is missing)."""
        return self.budget_bytes - self.total_bytes

    @property
    def fits(self) -> bool:
        return self.headroom_bytes >= 0

    @property
    def tight(self) -> bool:
        """Fits, but by less than TIGHT_MARGIN_GIB: on paper only, since the overhead is an allowance."""
        return self.fits and self.headroom_bytes < TIGHT_MARGIN_GIB * GiB

    def verdict(self) -> str:
        """The fit in words, computed from the numbers: fits with room, fits on paper only, or short by how much."""
        gib = self.headroom_bytes / GiB
        what = f"{self.precision}, {self.context_tokens:,} tokens"
        allowance = f"on paper, with a {self.overhead_bytes / GiB:.1f} GiB allowance"
        if not self.fits:
            return f"{what}: does not fit — {-gib:.2f} GiB short ({allowance})"
        if self.tight:
            return f"{what}: fits by only {gib:.2f} GiB ({allowance}) — expect OOMs in practice; measure"
        return f"{what}: fits, {gib:.2f} GiB to spare ({allowance})"

    def as_row(self) -> dict[str, Any]:
        """One table row in GiB, for a pandas DataFrame."""
        return {
            "precision": self.precision,
            "context tokens": self.context_tokens,
            "weights GiB": round(self.weights_bytes / GiB, 2),
            "KV cache GiB": round(self.kv_cache_bytes / GiB, 2),
            "overhead GiB": round(self.overhead_bytes / GiB, 2),
            "total GiB": round(self.total_bytes / GiB, 2),
            "budget GiB": round(self.budget_bytes / GiB, 2),
            "headroom GiB": round(self.headroom_bytes / GiB, 2),
            "fits": self.fits,
        }


def fits(config: Any, precision: str = "fp16", context_tokens: int = 4096, gpu: str | float = "T4",
         overhead_gib: float = DEFAULT_OVERHEAD_GIB, kv_dtype: str = "fp16") -> Fit:
    """Would this model run at this precision with this context on this GPU (name or usable GiB)? The weights count
    bitsandbytes' quantization constants too, as the GPU ledger (helpers.loadspec) does."""
    if isinstance(gpu, str):
        if gpu not in GPU_BUDGETS_GIB:
            raise ValueError(f"gpu={gpu!r} has no stored memory budget; known: {', '.join(GPU_BUDGETS_GIB)}. "
                             "Pass the usable memory in GiB instead, e.g. gpu=39.5 (torch reports it on the GPU "
                             "as memory.cuda_total_gib()).")
        budget_gib = GPU_BUDGETS_GIB[gpu]
    else:
        budget_gib = float(gpu)
    rest = "fp16" if precision in QUANTIZED else precision
    return Fit(
        precision=precision,
        context_tokens=context_tokens,
        weights_bytes=weight_bytes(config, precision, rest_dtype=rest) + quant_constants_bytes(config, precision),
        kv_cache_bytes=kv_cache_bytes(config, context_tokens, kv_dtype),
        overhead_bytes=int(overhead_gib * GiB),
        budget_bytes=int(budget_gib * GiB),
    )


def estimate_table(config: Any, precisions: tuple[str, ...] = ("fp16", "int8", "nf4"),
                   rest_dtype: str = "fp16") -> list[dict[str, Any]]:
    """Rows (precision, GB, GiB, + quantization constants) for a model from its config, for a DataFrame."""
    rows = []
    for p in precisions:
        b = weight_bytes(config, p, rest_dtype=rest_dtype)
        extra = quant_constants_bytes(config, p)
        rows.append({
            "precision": p,
            "weights GB (estimated)": round(b / GB, 2),
            "weights GiB": round(b / GiB, 2),
            "+ quant constants GB": round((b + extra) / GB, 2),
        })
    return rows


def smaller_precision(precision: str) -> str | None:
    """The next precision down that needs less memory (fp32→fp16→int8→nf4), or None below nf4."""
    return SMALLER.get(precision)


def human(n_bytes: float) -> str:
    """Bytes as '14.50 GB (13.50 GiB)': decimal GB as vendors print, GiB as torch and nvidia-smi do."""
    return f"{n_bytes / GB:.2f} GB ({n_bytes / GiB:.2f} GiB)"


def cuda_total_gib() -> float | None:
    """Total memory of the current CUDA GPU as torch reports it (GiB), or None without one: the measured budget."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory / GiB
    except Exception:
        return None


def free_memory_bytes(device: str) -> int | None:
    """Memory free for a new model on `device` now (CUDA: free on the current GPU; CPU: RAM available)."""
    if device == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info()
        return int(free)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


