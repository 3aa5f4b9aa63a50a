"""Load open-weight models for self-hosting: one loader for the notebooks and the local endpoint.

`load_model("smollm2-135m" | "standin" | hub id | path | "config:<name>", precision=..., device=...)` returns the
tokenizer and model, loaded with `from_pretrained` exactly as for Mistral-7B-Instruct, at fp32/fp16/bf16 or
quantized by bitsandbytes (int8, nf4). What to load is decided once, by `helpers.loadspec.plan_load` (with the GPU's
books, through `helpers.budget`); this module loads from that plan, checks where `accelerate` put the layers, and
frees models again (`unload`). Generation lives in `helpers.inference`.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import hooks, memory
from .device import default_precision  # noqa: F401  (selfhost.default_precision, used by tests and notebooks)
from .load_errors import ModelLoadError, _load_error_kind, explain_load_error  # noqa: F401  (selfhost.ModelLoadError)
from .loadspec import (  # noqa: F401  (the names notebooks and tests know from selfhost)
    MIN_BNB_CPU,
    PRECISIONS,
    LoadSpec,
    bnb_support,
    model_path,
    plan_load,
    quantization_config,
    torch_dtype,
)
from .memory import CONFIG_PREFIX
from .paths import quiet_progress
from .settings import SMOLLM, STANDIN

log = logging.getLogger(__name__)

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
    spec: LoadSpec | None = None  # the plan it was loaded from (what the GPU, real or planned for, holds for it)

    @property
    def is_standin(self) -> bool:
        return self.name == STANDIN

    @property
    def is_smollm(self) -> bool:
        """True for the offline model, SmolLM2-135M-Instruct (real weights, tiny, not Mistral)."""
        return self.name == SMOLLM

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
        return int(getattr(self.model.config.get_text_config(), "max_position_embeddings", 0) or 0)

    @property
    def footprint_bytes(self) -> int:
        """Parameters + buffers in bytes, as `model.get_memory_footprint()` reports them."""
        return int(self.model.get_memory_footprint())

    def estimated_bytes(self) -> int:
        """What helpers.memory predicts for this config, precision and compute dtype."""
        return memory.weight_bytes(self.model.config, self.precision, rest_dtype=self.compute_dtype)

    @property
    def stands_in_for(self) -> str | None:
        """When the load was planned for a GPU this machine lacks: what that GPU holds in this model's place, e.g.
        'mistralai/Mistral-7B-Instruct-v0.3 (nf4) on a Tesla T4 …'; None otherwise."""
        if self.spec is None or self.spec.placement is None:
            return None
        return f"{self.spec.target} ({self.spec.target_precision}) on a {self.spec.placement.label}"


def announce(cfg) -> dict[str, object]:
    """Print which device and which model this self-hosting notebook uses, and why; return the GPU facts (06–10).

    When the course decides for a GPU this machine lacks (`hooks.placement`) it says so, and every GPU number is
    predicted; the returned `name` then reads e.g. 'CPU only (Tesla T4 …)'.
    """
    from .device import gpu as gpu_facts
    from .settings import model_label, model_note

    hw = dict(gpu_facts())
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars freeze at 0% in a saved notebook: noise, not a lesson
    print(f"device: {cfg.device} ({hw['name']}) · model: {model_label(cfg.computes)} "
          f"(LOCAL_MODEL from {cfg.sources.get('LOCAL_MODEL', 'a parameter')})")
    place = hooks.placement(cfg.device)
    if place is not None:
        hw["name"] = f"{hw['name']} ({place.label})"
        hw["planned_for"] = place.gpu.key
        print(f"{place.note} It holds {cfg.gpu_model}.")
    if model_note(cfg.computes):
        print("ℹ️  " + model_note(cfg.computes))
    return hw


def pick_precision(precision: str, device: str) -> str:
    """`auto` → the device's default float dtype (fp16 on a GPU, or one planned for; fp32 on CPU); a choice is checked.

    For a whole load (what fits, what computes where) use `plan_load`, which decides with the GPU ledger.
    """
    from .loadspec import _check_bf16, _device

    if precision not in PRECISIONS:
        raise ModelLoadError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}.")
    real, profile, place = _device(device)
    chosen = default_precision("cuda" if place else real) if precision == "auto" else precision
    if chosen == "bf16" and profile is not None:
        _check_bf16(profile, place is not None)
    if chosen in memory.QUANTIZED:
        ok, why = bnb_support(real)
        if not ok:
            raise ModelLoadError(f"precision={chosen!r} needs bitsandbytes: {why}")
    return chosen


def offloaded_layers(model: Any) -> dict[str, list[str]]:
    """Layers `device_map="auto"` put on the CPU or disk instead of the GPU ({'cpu': [...], 'disk': [...]})."""
    placed = getattr(model, "hf_device_map", None) or {}
    out: dict[str, list[str]] = {}
    for name, where in placed.items():
        if str(where) in ("cpu", "disk"):
            out.setdefault(str(where), []).append(name)
    return out


def placement_warning(model: Any) -> str | None:
    """A plain-words warning when accelerate moved layers off the GPU (a silent, large slowdown); None if all fit."""
    moved = offloaded_layers(model)
    if not moved:
        return None
    where = " and ".join(f"{len(v)} to the {k}" for k, v in moved.items())
    return (f"⚠️  The model did not fit on the GPU: accelerate moved {where} ({', '.join(sum(moved.values(), [])[:3])}…). "
            "It will run, many times slower than on the GPU. Load a smaller precision (int8 or nf4, notebook 07), "
            "free the GPU (restart the kernel), or pass device_map='cuda' to get an out-of-memory error instead.")


# ---------------------------------------------------------------- the loader
def load_model(model: Any = SMOLLM, precision: str = "auto", device: str = "auto", *,
               kv_tokens: int = memory.DEFAULT_KV_TOKENS, owner: str = "notebook") -> LoadedModel:
    """Load tokenizer + model (hub id, local path, `smollm2-135m`, `standin`, `config:<name>`, or a resolved Settings).

    `kv_tokens` is the KV cache this model's generations need (prompt + new tokens, times the batch): the GPU
    ledger reserves it, so a load that would leave no room for its own answers is refused before it starts.
    """
    return load(plan_load(model, precision, device, kv_tokens=kv_tokens, owner=owner))


def load(spec: LoadSpec) -> LoadedModel:
    """Load what a `LoadSpec` decided: tokenizer, model at its precision, pad token, placement check, GPU ledger."""
    import torch
    from transformers import AutoTokenizer

    started = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.path, config=spec.config)  # the config read once, by plan_load
        with quiet_progress():  # AutoModelForCausalLM, or the image-text class for Ministral 3 (memory.model_class)
            lm = memory.model_class(spec.config).from_pretrained(spec.path, config=spec.config,
                                                                 **spec.from_pretrained_kwargs())
    except ModelLoadError:
        raise
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if not isinstance(exc, torch.OutOfMemoryError) and "can't allocate memory" not in str(exc):
            raise explain_load_error(exc, spec.model) from exc
        gc.collect()
        if spec.device == "cuda":
            torch.cuda.empty_cache()
        raise ModelLoadError(spec.oom_message(memory.free_memory_bytes(spec.device))) from exc
    except (OSError, ValueError) as exc:
        raise explain_load_error(exc, spec.model) from exc
    if spec.device != "cuda" and spec.quantization_config() is None:
        lm = lm.to(spec.device)
    lm.eval()
    if tokenizer.pad_token_id is None:
        # Mistral defines no pad token. Generation needs one; reusing EOS is the usual choice and harmless
        # at batch 1 because the attention mask tells the model which positions are real.
        tokenizer.pad_token = tokenizer.eos_token
    notes = []
    warning = placement_warning(lm) if spec.device == "cuda" else None
    if warning:
        notes.append(warning)
        log.warning(warning)
    spec.hold(lm)
    return LoadedModel(model=lm, tokenizer=tokenizer, name=spec.model, path=str(spec.path), precision=spec.precision,
                       device=spec.device, compute_dtype=spec.compute, load_seconds=time.perf_counter() - started,
                       notes=notes, spec=spec)


RANDOM_WEIGHTS_BANNER = (
    "⚠️  RANDOM WEIGHTS in the real model's shape (built from its config): memory and speed are real, "
    "its text is meaningless."
)


def banner(lm: LoadedModel) -> str | None:
    """Say loudly when a model's text means nothing (stand-in or random-weight `config:` model); `announce` names the rest."""
    from .labels import STANDIN_BANNER

    if lm.is_standin:
        print(STANDIN_BANNER)
        return STANDIN_BANNER
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


def chat_template(name: str = "mistral_v3") -> str:
    """A Jinja chat template shipped with the course (`mistral_v3`, or `mistral_v1` with its strict alternation)."""
    path = Path(__file__).parent / "templates" / f"{name}.jinja"
    if not path.exists():
        raise FileNotFoundError(f"No chat template named {name!r}; have: "
                                f"{sorted(p.stem for p in path.parent.glob('*.jinja'))}")
    return path.read_text()
