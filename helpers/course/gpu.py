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

from ..device import PROFILES, Ask, GiB, GpuProfile, MiB, Placement, gib  # noqa: F401  (re-exported)
from ..labels import SMOLLM, STANDIN, model_label
from ..load_errors import ModelLoadError

TWIN_PREFIX = "twin:"  # DEVICE='twin:t4': decide as on a T4, compute on the CPU

# The CUDA context (driver, kernels) before any tensor: "around 400MB if CUDA >= 11.7 is used and lazy module loading
# enabled (default in PyTorch)" — PyTorch's CUDA maintainer, github.com/pytorch/pytorch/issues/109888 (2023-09-23).
CUDA_CONTEXT_BYTES = 400 * MiB
# Activations at batch 1 and allocator fragmentation: an allowance, not a measurement (`make gpu-check` measures the
# real peak next to the ledger's prediction on a lent GPU).
HEADROOM_BYTES = 512 * MiB


class GpuBudgetError(ModelLoadError):
    """A load was refused before it started because it would not fit on the GPU; the message has the numbers."""


def twin_profile(device: str | None) -> GpuProfile | None:
    """The profile a `twin:<gpu>` device names (None for any other device); a clear error for an unknown GPU."""
    text = (device or "").strip().lower()
    if not text.startswith(TWIN_PREFIX):
        return None
    key = text.removeprefix(TWIN_PREFIX)
    if key not in PROFILES:
        raise ValueError(f"DEVICE={device!r}: no GPU twin named {key!r}. Known: "
                         f"{', '.join(TWIN_PREFIX + k for k in PROFILES)}.")
    return PROFILES[key]


def is_twin(device: str | None) -> bool:
    """True for a `twin:<gpu>` device string."""
    return (device or "").strip().lower().startswith(TWIN_PREFIX)


DEVICE_HELP = (f"a GPU twin ({', '.join(TWIN_PREFIX + k for k in PROFILES)}: decide everything as on that GPU with an "
               "HF token, compute on the CPU with SmolLM2, count GPU memory at the real model's footprint)")


def placement(device: str | None) -> Placement | None:
    """What `twin:<gpu>` means to the loader: decide for that GPU, compute SmolLM2 on the CPU (None for other devices)."""
    profile = twin_profile(device)
    if profile is None:
        return None
    label = f"{profile.name} twin"
    note = (f"🪞 GPU twin: every decision is made as on a {profile.name} ({gib(profile.capacity_bytes)}, native bf16: "
            f"{'yes' if profile.native_bf16 else 'no'}); {model_label(SMOLLM)} computes on the CPU in place of any "
            "larger model. GPU memory figures are predicted on the twin, not measured.")
    return Placement(device=f"{TWIN_PREFIX}{profile.key}", gpu=profile, compute_device="cpu", compute_model=SMOLLM,
                     label=label, note=note)


def computes(model: str) -> str:
    """On a twin, the model that computes in `model`'s place: the offline models themselves, SmolLM2 for the rest."""
    return model if model in (SMOLLM, STANDIN) else SMOLLM


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
    placements: list[str] = field(default_factory=list)  # what accelerate's own device-map inference said, per load
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

    def check_placement(self, config: Any, precision: str, device_map: Any, ask: Ask) -> dict[str, Any]:
        """Ask transformers/accelerate's own device-map inference (course.placement, on the meta-device model) where
        this load's layers would go on the card as it is now; refuse, with the layers named, if any would leave GPU 0."""
        from .placement import accelerate_placement

        with self._lock:
            free = self.capacity_bytes - self.used_bytes() - (0 if self.residents else self.context_bytes)
        placed = accelerate_placement(config, free, precision, device_map=device_map)
        if placed["off_gpu"] or not placed["weights_fit_free"]:
            off = placed["off_gpu"] or ["(its weights exceed the free memory)"]
            raise GpuBudgetError(
                f"Refused before loading: with device_map={device_map!r}, accelerate would place {len(off)} part(s) "
                f"of {ask.name} off GPU 0 of the {self.profile.name}{' twin' if self.twin else ''} "
                f"({', '.join(off[:5])}{'…' if len(off) > 5 else ''}; {gib(free)} free): generation would crawl. "
                "Load it with device_map={'': 0} (the course's loader does), a smaller precision, or free the GPU.")
        with self._lock:
            self.placements.append(f"{ask.name}: all on GPU 0 (accelerate, device_map={device_map!r}, "
                                   f"{gib(placed['model_bytes'])} of {gib(free)} free)")
        return placed

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
                "placements": list(self.placements),
                "all_on_gpu0": all("all on GPU 0" in p for p in self.placements),
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


def device_name(device: str | None) -> str:
    """The device a notebook's figures and records name: the GPU torch sees (or "CPU only"), with a twin's name."""
    from helpers.device import gpu

    twin = twin_profile(device)
    return gpu()["name"] + (f" ({twin.name} twin)" if twin else "")
