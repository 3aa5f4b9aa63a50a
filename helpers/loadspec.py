"""What to load, worked out once: path, config, precision, dtype, quantization config, device and GPU footprint.

`plan_load(model, precision, device)` (notebooks 06–10 and the endpoint, through `selfhost.load_model`) reads each
config once and decides everything a load needs, as on the GPU it will run on, then asks the GPU's books
(`helpers.budget`, the one door to the course's machinery) whether it fits. The preflight, the out-of-memory message
and the ledger all read the one `LoadSpec` it returns; `selfhost` loads from it and never goes back to `memory`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import Version

from . import hooks, memory
from .device import Ask, GpuProfile, Placement, default_precision, gib, native_bf16
from .load_errors import ModelLoadError, explain_load_error
from .memory import CONFIG_PREFIX, FLOAT_PRECISIONS, QUANTIZED
from .settings import SMOLLM, STANDIN, SettingsError, resolve_device

PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8", "nf4")
MIN_BNB_CPU = Version("0.46")  # bitsandbytes runs 8-bit and 4-bit layers on CPU from 0.46 on
# Hub ids whose config.json the course ships (data/configs): a load planned for a GPU this machine lacks reads them
# with no network.
HUB_CONFIGS = {"mistralai/Mistral-7B-Instruct-v0.3": "mistral-7b-instruct-v0.3",
               "mistralai/Mistral-7B-Instruct-v0.1": "mistral-7b-instruct-v0.1",
               "mistralai/Ministral-3-3B-Instruct-2512-BF16": "ministral-3-3b-instruct-2512"}
# `auto` on a GPU: fp16 when it fits with its KV cache and the headroom, else NF4 — smaller than LLM.int8 and, on a
# T4, faster (≈11.6 vs FP16's ≈16 tokens/s for Mistral-7B; int8 is typically 2–5× slower than FP16: ANCHORS).
AUTO_GPU_ORDER = ("fp16", "nf4")


def torch_dtype(precision: str):
    """The torch dtype for a float precision name ('fp32', 'fp16', 'bf16')."""
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


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


def quantization_config(precision: str, compute: str):
    """The BitsAndBytesConfig for int8 (LLM.int8, outlier threshold 6.0) or nf4 (double quant), else None."""
    from transformers import BitsAndBytesConfig

    if precision == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=6.0)
    if precision == "nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=torch_dtype(compute))
    return None


# ---------------------------------------------------------------- where the weights come from
def model_path(model: str) -> str:
    """`smollm2-135m` / `standin` → their built folders; `config:<name>` → a random-weight checkpoint; else unchanged."""
    if model in (SMOLLM, STANDIN) or model.startswith(CONFIG_PREFIX):
        return hooks.offline_model(model)  # built once by the course's machinery, with no hub
    return model


def _check_model_name(model: str) -> None:
    """A clear error for a folder that does not exist or a name that is neither a folder nor a hub id (owner/name)."""
    if model in (STANDIN, SMOLLM) or model.startswith(CONFIG_PREFIX) or Path(model).expanduser().exists():
        return
    if model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model:
        raise ModelLoadError(
            f"LOCAL_MODEL={model!r}: no such folder. Check the path (it must hold config.json and the weights), or "
            f"use '{SMOLLM}' offline, or a hub id such as 'mistralai/Mistral-7B-Instruct-v0.3' with network access.")
    if "/" not in model:
        raise ModelLoadError(
            f"Unknown model {model!r}: not a local folder and not a hub id (owner/name). "
            f"Use '{SMOLLM}' offline, or e.g. 'mistralai/Mistral-7B-Instruct-v0.3' with network access.")


def _read_config(model: str, path: str | None, offline_ok: bool):
    """The transformers config for a model, read once: the shipped copy for known hub ids when it is only planned for
    (its weights are never read), else its own."""
    try:
        if model.startswith(CONFIG_PREFIX):
            return memory.load_config(model)
        if offline_ok and model in HUB_CONFIGS:
            return memory.load_config(HUB_CONFIGS[model])
        return memory.load_config(path or model)
    except FileNotFoundError as exc:
        raise ModelLoadError(str(exc)) from exc
    except (OSError, ValueError) as exc:
        raise explain_load_error(exc, model) from exc


def gpu_bytes(config: Any, precision: str) -> int:
    """What a model's weights take on a GPU at a precision: as get_memory_footprint counts + quantization constants."""
    return memory.weight_bytes(config, precision, rest_dtype="fp16") + memory.quant_constants_bytes(config, precision)


@dataclass(frozen=True)
class LoadSpec:
    """One load, decided once: what computes where, and what the GPU (real, or planned for) holds for it."""

    asked: str  # the model as asked for (a hub id, a path, smollm2-135m, config:…)
    model: str  # what computes: the same, or the smaller model a placement swaps in
    path: str  # where from_pretrained reads it
    config: Any  # the computing model's transformers config
    precision: str  # of what computes
    compute: str  # activations' dtype, and of every weight bitsandbytes leaves unquantized
    device: str  # the torch device that computes
    gpu: GpuProfile | None  # the GPU the decisions are for (None on a CPU)
    placement: Placement | None  # set when decisions are for a GPU this machine lacks (hooks.placement)
    target: str  # what the GPU holds (== model unless a placement swapped it)
    target_config: Any
    target_precision: str
    gpu_weights_bytes: int  # predicted: target at target precision, with quantization constants
    kv_tokens: int
    gpu_kv_bytes: int
    why: str  # how the precision was chosen
    owner: str = "notebook"

    @property
    def torch_dtype(self):
        return torch_dtype(self.compute)

    @property
    def device_map(self) -> dict | None:
        """`{"": 0}` on a GPU: every layer on GPU 0 (the plan checked it fits). Plain "auto" would let accelerate keep
        10% of the card free and move a model that nearly fills it (Mistral-7B fp16 on a T4) partly to the CPU."""
        return {"": 0} if self.device == "cuda" else None

    def quantization_config(self):
        return quantization_config(self.precision, self.compute)

    def from_pretrained_kwargs(self) -> dict[str, Any]:
        """`dtype`, `quantization_config` and `device_map` for AutoModelForCausalLM.from_pretrained."""
        kwargs: dict[str, Any] = {"dtype": self.torch_dtype}
        if self.quantization_config() is not None:
            kwargs["quantization_config"] = self.quantization_config()
        if self.device_map:
            kwargs["device_map"] = self.device_map
        return kwargs

    def estimated_bytes(self) -> int:
        """What `get_memory_footprint()` will report for the computing model (helpers.memory's estimate)."""
        return memory.weight_bytes(self.config, self.precision, rest_dtype=self.compute)

    def ask(self) -> Ask:
        """What this load asks of the GPU ledger, with cheaper precisions to suggest if it does not fit."""
        alts = tuple((f"{self.target} at {p}", gpu_bytes(self.target_config, p) + self.gpu_kv_bytes)
                     for p in ("int8", "nf4") if memory.BYTES_PER_PARAM[p] < memory.BYTES_PER_PARAM[self.target_precision])
        return Ask(f"{self.target} ({self.target_precision})", self.owner, self.gpu_weights_bytes,
                   self.gpu_kv_bytes, alts, model=self.target)

    def ledger(self) -> Any | None:
        return hooks.ledger(self.placement.device if self.placement else self.device)

    def hold(self, model: Any) -> Any | None:
        """Register the loaded model on the GPU ledger for as long as it lives; refuse (GpuBudgetError) if it cannot fit."""
        book = self.ledger()
        if book is None:
            return None
        resident = book.admit(self.ask())
        book.hold(model, resident)
        return resident

    def summary(self) -> str:
        """One line: what loads, at what precision, where, and what the GPU holds for it."""
        line = f"{self.model} at {self.precision} on {self.device}"
        if self.gpu is not None:
            where = self.placement.label if self.placement else self.gpu.name
            line += (f" · on the {where}: {self.target} at {self.target_precision}, "
                     f"{gib(self.gpu_weights_bytes)} weights + {gib(self.gpu_kv_bytes)} KV cache for "
                     f"{self.kv_tokens:,} tokens (predicted) · {self.why}")
        return line

    def oom_message(self, free: int | None) -> str:
        """Say how much memory the load needed vs what was free, and which smaller precision to try."""
        where = self.device
        if self.device == "cuda":
            import torch

            where = f"cuda ({torch.cuda.get_device_name()})"
        have = memory.human(free) if free is not None else "an unknown amount"
        need = self.estimated_bytes()
        msg = (f"Not enough memory to load {self.model} at {self.precision}: the weights need ≈{memory.human(need)}, "
               f"{have} is free on {where}.")
        nxt = memory.smaller_precision(self.precision)
        if nxt:
            msg += (f" Try precision='{nxt}' (≈{memory.human(memory.weight_bytes(self.config, nxt))}), free memory "
                    "(restart the kernel, unload other models), or use a smaller model.")
        else:
            msg += " nf4 is the smallest precision here: use a smaller model or a GPU with more memory."
        return msg


def _device(device: str) -> tuple[str, GpuProfile | None, Placement | None]:
    """(torch device that computes, GPU profile decided for, placement) for a DEVICE value."""
    try:
        place = hooks.placement(device)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from None
    if place is not None:
        return place.compute_device, place.gpu, place
    try:
        real = resolve_device(device)
    except SettingsError as exc:
        raise ModelLoadError(str(exc)) from None
    book = hooks.ledger(real) if real == "cuda" else None
    return real, (book.profile if book else None), None


def _check_bf16(profile: GpuProfile | None, planned: bool) -> None:
    native = profile.native_bf16 if planned else native_bf16()
    if not native:
        cc = ".".join(map(str, profile.compute_capability)) if profile else "?"
        raise ModelLoadError(
            f"{profile.name if profile else 'This GPU'} has no native bf16 (compute capability {cc}; bf16 needs 8.0+, "
            "e.g. A100, L4, H100 — on a T4 torch would only emulate it, slowly): use precision='fp16' or 'auto'.")


def plan_load(model: Any = SMOLLM, precision: str = "auto", device: str = "auto", *,
              kv_tokens: int = memory.DEFAULT_KV_TOKENS, owner: str = "notebook") -> LoadSpec:
    """Decide one load (model id/path or a resolved Settings, precision, device) and ask the GPU's books if it fits.

    Raises ModelLoadError (bad name, precision or device; not enough RAM), or the ledger's refusal (would not fit on
    the GPU, with what is resident and what would fit instead), before a single weight is read.
    """
    if hasattr(model, "gpu_model"):  # a helpers.settings.Settings: the model the GPU holds, and its DEVICE
        model, device = model.gpu_model, model.device
    if precision not in PRECISIONS:
        raise ModelLoadError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}.")
    if kv_tokens < 0:
        raise ModelLoadError(f"kv_tokens={kv_tokens}: the KV cache to reserve is a number of tokens, 0 or more.")
    torch_device, profile, place = _device(device)
    if model.strip().lower() == "auto":  # as settings resolves LOCAL_MODEL='auto' for this device
        from .settings import resolve_local_model

        model = resolve_local_model("auto", "cuda" if place else torch_device, token=True if place else None)[0]
    _check_model_name(model)
    compute_model = hooks.computes(model, place.device) if place else model
    own = model_path(model) if model in (SMOLLM, STANDIN) else None  # built folders: their config is inside
    target_cfg = _read_config(model, own, offline_ok=place is not None)
    book = (hooks.ledger(place.device if place else torch_device)) if profile else None

    # the precision, decided as on the GPU (the real one, or the one planned for)
    def kv(p: str) -> int:
        return memory.kv_cache_bytes(target_cfg, kv_tokens, "fp32" if p == "fp32" else "bf16" if p == "bf16" else "fp16")

    if precision == "auto" and book is not None:
        target_precision = next((p for p in AUTO_GPU_ORDER if book.fits(gpu_bytes(target_cfg, p), kv(p))),
                                AUTO_GPU_ORDER[0])
        why = ("auto: fp16 fits with its KV cache and headroom" if target_precision == "fp16" else
               f"auto: fp16 would not fit on the {profile.name} with {kv_tokens:,} tokens of KV cache, so nf4")
    elif precision == "auto":
        target_precision, why = default_precision(torch_device), f"auto: {default_precision(torch_device)} on {torch_device}"
    else:
        target_precision, why = precision, "as asked"
    if target_precision == "bf16" and profile is not None:
        _check_bf16(profile, place is not None)
    if place is not None:  # a smaller model computes on the CPU: quantized when you asked for a quantization (the
        # bitsandbytes path then runs for real), else in the CPU's own dtype — an `auto` nf4 decision is accounted,
        # not imitated, so its answers and speed stay those of the plain CPU run
        compute_precision = precision if precision in QUANTIZED else default_precision("cpu")
    else:
        compute_precision = target_precision
    if compute_precision in QUANTIZED:
        ok, reason = bnb_support(torch_device)
        if not ok:
            raise ModelLoadError(f"precision={compute_precision!r} needs bitsandbytes: {reason}")
    compute = compute_precision if compute_precision in FLOAT_PRECISIONS else default_precision(torch_device)

    if compute_model == model:
        config, path = target_cfg, own
    else:
        path = model_path(compute_model)
        config = _read_config(compute_model, path, offline_ok=False)
    if place is None:  # RAM / free GPU memory now, for what really loads here
        need = memory.weight_bytes(config, compute_precision, rest_dtype=compute)
        free = memory.free_memory_bytes(torch_device)
        if free is not None and need > free:
            raise ModelLoadError(_bare(model, compute_precision, compute, config, torch_device).oom_message(free))
    weights = gpu_bytes(target_cfg, target_precision) if profile else 0
    spec = LoadSpec(asked=model, model=compute_model, path=path or "", config=config, precision=compute_precision,
                    compute=compute, device=torch_device, gpu=profile, placement=place, target=model,
                    target_config=target_cfg, target_precision=target_precision, gpu_weights_bytes=weights,
                    kv_tokens=kv_tokens, gpu_kv_bytes=kv(target_precision) if profile else 0, why=why, owner=owner)
    if book is not None:  # refused now, with the numbers, rather than halfway through reading 14 GB
        book.check(spec.ask())
        if target_precision in FLOAT_PRECISIONS:  # where accelerate itself would put each layer, given the card now
            book.check_placement(target_cfg, target_precision, {"": 0}, spec.ask())
    if not spec.path:  # built last: a config: checkpoint is 14 GB, made only once the load is known to fit
        built = (hooks.offline_model(compute_model, config) if compute_model.startswith(CONFIG_PREFIX)
                 else model_path(compute_model))
        spec = _with_path(spec, str(built))
    return spec


def _bare(model: str, precision: str, compute: str, config: Any, device: str) -> LoadSpec:
    return LoadSpec(model, model, "", config, precision, compute, device, None, None, model, config, precision,
                    0, 0, 0, "")


def _with_path(spec: LoadSpec, path: str) -> LoadSpec:
    from dataclasses import replace

    return replace(spec, path=path)
