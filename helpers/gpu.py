"""The GPU this process runs on — a real CUDA card or a twin — and a ledger of everything the course puts on it.

Used by notebooks 06–10, through `selfhost`, `embeddings` and the endpoint. The machines that build and test this
course have no GPU, so `DEVICE='twin:t4'` (or `twin:l4`, `twin:a100-40gb`) makes the course decide everything as
on that card — which model, which precision, what fits — while SmolLM2 computes on the CPU. The ledger counts
each load at the footprint of the *target* model (Mistral-7B from its real config, on the meta device) plus the
CUDA context and the KV cache the load asks for, and refuses a load that would not fit before it starts. Every
twin number is predicted, never measured: the reports say so. On a real CUDA GPU the same ledger runs against the
card's measured capacity, so the twin and the card decide alike.
"""

from __future__ import annotations

import gc
import itertools
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from .device import PROFILES, TWIN_PREFIX, GiB, GpuProfile, MiB, is_twin, twin_profile  # noqa: F401  (re-exported)
from .load_errors import ModelLoadError

# The CUDA context (driver, kernels) before any tensor: "around 400MB if CUDA >= 11.7 is used and lazy module loading
# enabled (default in PyTorch)" — PyTorch's CUDA maintainer, github.com/pytorch/pytorch/issues/109888 (2023-09-23).
CUDA_CONTEXT_BYTES = 400 * MiB
# Activations at batch 1 and allocator fragmentation: an allowance, not a measurement (`make gpu-check` measures the
# real peak next to the ledger's prediction on a lent GPU).
HEADROOM_BYTES = 512 * MiB
# KV cache a model reserves unless the caller says how many tokens it needs: one 4k-token conversation, or several
# shorter concurrent ones (0.5 GiB for Mistral-7B at fp16).
DEFAULT_KV_TOKENS = 4096


class GpuBudgetError(ModelLoadError):
    """A load was refused before it started because it would not fit on the GPU; the message has the numbers."""


def gib(n: float) -> str:
    return f"{n / GiB:.2f} GiB"


@dataclass
class Resident:
    """One thing on the GPU: what it is, its weights and the KV cache it reserves."""

    id: int
    name: str
    owner: str
    weights_bytes: int
    kv_bytes: int
    model: str = ""  # the model's id: one copy of a model per GPU

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes

    def describe(self) -> str:
        kv = f" + {gib(self.kv_bytes)} KV cache" if self.kv_bytes else ""
        return f"{self.name} ({self.owner}): {gib(self.weights_bytes)} weights{kv}"


@dataclass(frozen=True)
class Ask:
    """A load the ledger is asked to admit: name, owner, predicted bytes, and cheaper options to suggest if refused."""

    name: str
    owner: str
    weights_bytes: int
    kv_bytes: int
    alternatives: tuple[tuple[str, int], ...] = ()  # (what to try, its weights + KV bytes)
    model: str = ""  # the model's id: a second copy of a resident model is refused, whatever its precision


@dataclass
class Ledger:
    """Everything the course holds on one GPU in this process, with the peak; refuses loads that would not fit."""

    profile: GpuProfile
    twin: bool
    context_bytes: int = CUDA_CONTEXT_BYTES
    headroom_bytes: int = HEADROOM_BYTES
    residents: dict[int, Resident] = field(default_factory=dict)
    peak_bytes: int = 0
    peak_residents: list[str] = field(default_factory=list)
    loads: int = 0
    _ids: Any = field(default_factory=itertools.count, repr=False)
    _lock: Any = field(default_factory=threading.RLock, repr=False)

    @property
    def capacity_bytes(self) -> int:
        return self.profile.capacity_bytes

    def used_bytes(self) -> int:
        """CUDA context (once anything is resident) + every resident's weights and KV cache."""
        with self._lock:
            held = sum(r.total_bytes for r in self.residents.values())
            return held + (self.context_bytes if self.residents else 0)

    def free_bytes(self) -> int:
        return self.capacity_bytes - self.used_bytes()

    def _needed(self, extra: int, without: set[int] = frozenset()) -> int:
        held = sum(r.total_bytes for i, r in self.residents.items() if i not in without)
        return held + extra + self.context_bytes + self.headroom_bytes

    def fits(self, weights_bytes: int, kv_bytes: int = 0) -> bool:
        """Would this much more fit now, with the CUDA context and the headroom allowance?"""
        with self._lock:
            return self._needed(weights_bytes + kv_bytes) <= self.capacity_bytes

    def refusal(self, ask: Ask) -> str:
        """The message for a load that does not fit: what is resident, what was asked, the numbers, what would fit."""
        need = self._needed(ask.weights_bytes + ask.kv_bytes)
        where = f"{self.profile.name}{' (twin: predicted, not measured)' if self.twin else ''}"
        lines = [f"Refused before loading: {ask.name} would not fit on the {where}.",
                 f"  asked: {gib(ask.weights_bytes)} weights + {gib(ask.kv_bytes)} KV cache ({ask.owner})"]
        lines += [f"  resident: {r.describe()}" for r in self.residents.values()] or ["  resident: nothing"]
        lines.append(f"  + CUDA context {gib(self.context_bytes)} + headroom {gib(self.headroom_bytes)} = "
                     f"{gib(need)} needed of {gib(self.capacity_bytes)} ({gib(need - self.capacity_bytes)} short)")
        ideas = [f"load {what} instead ({gib(b)})" for what, b in ask.alternatives if self._needed(b) <= self.capacity_bytes]
        for rid, r in self.residents.items():
            if self._needed(ask.weights_bytes + ask.kv_bytes, {rid}) <= self.capacity_bytes:
                ideas.append(f"unload {r.name} first (selfhost.unload, or restart the kernel)")
        if not ideas:
            ideas.append("use a smaller model, or a GPU with more memory")
        lines.append("  what would fit: " + "; or ".join(ideas) + ".")
        return "\n".join(lines)

    def copy_of(self, ask: Ask) -> Resident | None:
        """The resident that already holds the model asked for (one copy of a model per GPU), or None."""
        return next((r for r in self.residents.values() if ask.model and r.model == ask.model), None)

    def duplicate(self, ask: Ask, held: Resident) -> str:
        return (f"Refused before loading: {ask.model} is already on the {self.profile.name}"
                f"{' twin' if self.twin else ''} — {held.describe()}. A second copy would take another "
                f"{gib(ask.weights_bytes)} for the same weights. Use the one that is loaded (the course endpoint's: "
                "helpers.client.served_model(url)), or unload it first.")

    def check(self, ask: Ask) -> None:
        """Raise GpuBudgetError if this load would be refused (a second copy, or not enough room); change nothing."""
        with self._lock:
            if self.copy_of(ask) is not None or self._needed(ask.weights_bytes + ask.kv_bytes) > self.capacity_bytes:
                gc.collect()  # a model the notebook dropped may still be waiting for the collector
            held = self.copy_of(ask)
            if held is not None:
                raise GpuBudgetError(self.duplicate(ask, held))
            if self._needed(ask.weights_bytes + ask.kv_bytes) > self.capacity_bytes:
                raise GpuBudgetError(self.refusal(ask))

    def admit(self, ask: Ask) -> Resident:
        """Register a load if it fits; raise GpuBudgetError with the numbers (and what would fit) if it does not."""
        with self._lock:
            if self.copy_of(ask) is not None:
                gc.collect()
            held = self.copy_of(ask)
            if held is not None:
                raise GpuBudgetError(self.duplicate(ask, held))
            if self._needed(ask.weights_bytes + ask.kv_bytes) > self.capacity_bytes:
                gc.collect()  # a model the notebook dropped may still be waiting for the collector
            if self._needed(ask.weights_bytes + ask.kv_bytes) > self.capacity_bytes:
                raise GpuBudgetError(self.refusal(ask))
            rid = next(self._ids)
            self.residents[rid] = Resident(rid, ask.name, ask.owner, ask.weights_bytes, ask.kv_bytes, ask.model)
            self.loads += 1
            used = self.used_bytes()
            if used > self.peak_bytes:
                self.peak_bytes = used
                self.peak_residents = [r.describe() for r in self.residents.values()]
            return self.residents[rid]

    def release(self, resident: Resident | int | None) -> None:
        """Take a resident off the ledger (its model was unloaded or garbage-collected)."""
        rid = resident.id if isinstance(resident, Resident) else resident
        with self._lock:
            self.residents.pop(rid, None)

    def hold(self, obj: Any, resident: Resident) -> None:
        """Keep `resident` on the ledger exactly as long as `obj` (a model) is alive, as its GPU memory would be."""
        weakref.finalize(obj, self.release, resident.id)

    def report(self) -> dict[str, Any]:
        """For `record(gpu_twin=...)`: the GPU, its capacity, the peak and what was resident at the peak."""
        with self._lock:
            return {
                "profile": self.profile.key,
                "gpu": self.profile.name,
                "kind": "predicted on a twin, not measured" if self.twin else "ledger on a real GPU (predicted)",
                "capacity_bytes": self.capacity_bytes,
                "peak_bytes": self.peak_bytes,
                "headroom_at_peak_bytes": self.capacity_bytes - self.peak_bytes,
                "resident_at_peak": list(self.peak_residents),
                "resident_now": [r.describe() for r in self.residents.values()],
                "loads": self.loads,
                "cuda_context_bytes": self.context_bytes,
                "headroom_allowance_bytes": self.headroom_bytes,
            }

    def summary(self) -> str:
        """One line: the GPU, what is resident, and what is left."""
        held = "; ".join(r.describe() for r in self.residents.values()) or "nothing"
        kind = " twin (predicted)" if self.twin else ""
        return (f"{self.profile.name}{kind}: {gib(self.used_bytes())} of {gib(self.capacity_bytes)} used "
                f"({held}; CUDA context {gib(self.context_bytes) if self.residents else '0'}), "
                f"{gib(self.free_bytes())} free, peak {gib(self.peak_bytes)}")


_ledger: Ledger | None = None
_ledger_lock = threading.Lock()


def _cuda_profile() -> GpuProfile:
    import torch

    props = torch.cuda.get_device_properties(0)
    return GpuProfile("cuda", props.name, int(props.total_memory), (props.major, props.minor),
                      f"measured by torch.cuda on this machine ({props.name})")


def ledger_for(device: str | None) -> Ledger | None:
    """This process's GPU ledger for a device: the twin's for `twin:<gpu>`, the card's for `cuda`, None on a CPU."""
    global _ledger
    profile = twin_profile(device)
    if profile is None and (device or "").lower() != "cuda":
        return None
    with _ledger_lock:
        if _ledger is None:
            _ledger = Ledger(profile, twin=True) if profile else Ledger(_cuda_profile(), twin=False)
        elif profile is not None and (not _ledger.twin or _ledger.profile.key != profile.key):
            raise ValueError(f"This process already accounts for {_ledger.profile.name}; one process has one GPU. "
                             f"Restart the kernel to switch to DEVICE='{TWIN_PREFIX}{profile.key}'.")
        return _ledger


def current_ledger() -> Ledger | None:
    """The ledger this process has used so far (None when nothing was put on a GPU or a twin)."""
    return _ledger


def reset_ledger() -> None:
    """Forget the process's ledger (tests; a notebook's kernel starts with none)."""
    global _ledger
    with _ledger_lock:
        _ledger = None


def metrics(device: str | None = None) -> dict[str, Any]:
    """What a notebook records about its GPU: {'gpu_twin': report} on a twin, {'gpu_ledger': ...} on a card, {} on CPU.

    Give the notebook's device so a twin run that put nothing on the GPU still reports its (empty) ledger.
    """
    book = _ledger if _ledger is not None else ledger_for(device) if is_twin(device) else None
    if book is None:
        return {}
    return {"gpu_twin" if book.twin else "gpu_ledger": book.report()}


# ---------------------------------------------------------------- vLLM on one GPU (notebook 10)
# vLLM's memory model, as its docs describe it (docs.vllm.ai, "Engine Arguments" and "Conserving Memory", read
# 2026-12-01): `--gpu-memory-utilization` (default 0.9) is the share of the card's total memory this instance may use
# for weights, activations and the KV cache together; after loading the weights and a profiling run, what is left of
# that share becomes KV cache, which must hold at least one `--max-model-len` sequence or vLLM refuses to start.
VLLM_UTILIZATION = 0.9
# Activations of the profiling run, CUDA graphs and the non-torch context, inside the share: an allowance, not a
# measurement (vLLM prints its own numbers at start-up: compare them).
VLLM_OVERHEAD_BYTES = 1 * GiB
VLLM_LENGTHS = (32768, 16384, 8192, 4096, 2048)  # --max-model-len candidates, longest first (Mistral-7B-v0.3: 32k)
VLLM_MIN_SEQUENCES = 4  # a length is chosen only if the KV cache holds this many full-length sequences at once
VLLM_CHECKED = ("flags checked 2026-12-01 against vLLM's docs: tool calling ('Mistral Models': --tokenizer-mode "
                "mistral, --enable-auto-tool-choice --tool-call-parser mistral), BitsAndBytes (in-flight 4-bit with "
                "--quantization bitsandbytes, bitsandbytes on Turing and newer), engine arguments (--dtype half, "
                "--max-model-len, --gpu-memory-utilization); not run here: no GPU")


@dataclass(frozen=True)
class VllmPlan:
    """A `vllm serve` command for one GPU and the memory arithmetic behind it (predicted, vLLM's model)."""

    model: str
    profile: GpuProfile
    quantization: str | None  # None (fp16 weights) or "bitsandbytes" (in-flight 4-bit NF4)
    dtype: str  # "half" where the GPU has no native bf16 (a T4), else "auto"
    max_model_len: int
    utilization: float
    weights_bytes: int
    kv_bytes_per_token: int

    @property
    def budget_bytes(self) -> int:
        return int(self.utilization * self.profile.capacity_bytes)

    @property
    def kv_budget_bytes(self) -> int:
        """What is left of the share for the KV cache once weights and the overhead allowance are in."""
        return self.budget_bytes - self.weights_bytes - VLLM_OVERHEAD_BYTES

    @property
    def sequences(self) -> int:
        """Full `max_model_len` sequences the KV cache holds at once (0: vLLM would refuse to start)."""
        return max(0, self.kv_budget_bytes // (self.kv_bytes_per_token * self.max_model_len))

    def problems(self) -> list[str]:
        """Why this command would fail on its GPU (empty when it fits), in vLLM's terms."""
        out = []
        if self.weights_bytes + VLLM_OVERHEAD_BYTES > self.budget_bytes:
            out.append(f"weights {gib(self.weights_bytes)} + {gib(VLLM_OVERHEAD_BYTES)} overhead exceed "
                       f"--gpu-memory-utilization {self.utilization} × {gib(self.profile.capacity_bytes)} = "
                       f"{gib(self.budget_bytes)}")
        elif self.sequences < 1:
            out.append(f"the KV cache left ({gib(self.kv_budget_bytes)}) cannot hold one {self.max_model_len:,}-token "
                       f"sequence ({gib(self.kv_bytes_per_token * self.max_model_len)}): lower --max-model-len")
        if self.dtype != "half" and not self.profile.native_bf16:
            out.append(f"the {self.profile.name} has no native bf16: pass --dtype half")
        return out

    @property
    def fits(self) -> bool:
        return not self.problems()

    def command(self, port: int = 8000) -> str:
        parts = [f"vllm serve {self.model} --tokenizer-mode mistral"]
        if self.quantization:
            parts.append(f"--quantization {self.quantization}")  # in-flight 4-bit from the official weights
        else:
            parts.append("--config-format mistral --load-format mistral")
        parts += [f"--dtype {self.dtype}", f"--max-model-len {self.max_model_len}",
                  f"--gpu-memory-utilization {self.utilization}",
                  "--enable-auto-tool-choice --tool-call-parser mistral", f"--port {port}"]
        return " ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"gpu": self.profile.name, "command": self.command(), "fits": self.fits, "problems": self.problems(),
                "quantization": self.quantization, "dtype": self.dtype, "max_model_len": self.max_model_len,
                "budget_bytes": self.budget_bytes, "weights_bytes": self.weights_bytes,
                "kv_budget_bytes": self.kv_budget_bytes, "full_length_sequences": self.sequences,
                "kind": "predicted from the config with vLLM's memory model, not measured"}


def vllm_plan(config: Any, profile: GpuProfile, *, quantization: str | None = None, max_model_len: int = 32768,
              dtype: str | None = None, utilization: float = VLLM_UTILIZATION,
              model: str = "mistralai/Mistral-7B-Instruct-v0.3") -> VllmPlan:
    """The arithmetic for one `vllm serve` command (any flags) on a GPU; `.problems()` says why it would fail."""
    from . import memory

    precision = "nf4" if quantization == "bitsandbytes" else "fp16"
    weights = memory.weight_bytes(config, precision, rest_dtype="fp16") + memory.quant_constants_bytes(config, precision)
    return VllmPlan(model, profile, quantization, dtype or ("auto" if profile.native_bf16 else "half"), max_model_len,
                    utilization, weights, memory.kv_bytes_per_token(config, "fp16"))


def vllm_recipe(config: Any, profile: GpuProfile, model: str = "mistralai/Mistral-7B-Instruct-v0.3") -> VllmPlan:
    """A `vllm serve` command that fits this GPU: fp16 weights if they fit, else in-flight 4-bit; the longest
    `--max-model-len` whose KV cache holds VLLM_MIN_SEQUENCES full-length sequences; `--dtype half` without bf16."""
    for quantization in (None, "bitsandbytes"):
        for length in VLLM_LENGTHS:
            plan = vllm_plan(config, profile, quantization=quantization, max_model_len=length, model=model)
            if plan.fits and plan.sequences >= VLLM_MIN_SEQUENCES:
                return plan
    return vllm_plan(config, profile, quantization="bitsandbytes", max_model_len=VLLM_LENGTHS[-1], model=model)
