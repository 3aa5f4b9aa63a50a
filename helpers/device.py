"""The one GPU probe: is there a CUDA GPU, does it compute bf16 natively, what precision suits a device.

Used by every notebook that decides or reports precision (00, 05–10) through `settings`, `selfhost` and `doctor`,
so the course never asks torch the same question two different ways (`is_bf16_supported()` alone says True
on a T4, counting emulation). It also names the GPUs the course plans for (a T4 first) and what a load asks of one.
"""

from __future__ import annotations

from dataclasses import dataclass

GiB = 2**30
MiB = 2**20



def cuda_available() -> bool:
    """True when torch sees a CUDA GPU (False when torch is missing)."""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def native_bf16() -> bool:
    """True when the CUDA GPU computes bf16 natively (compute capability 8.0+: A100, L4, H100); False on CPU and a T4.

    `torch.cuda.is_bf16_supported()` alone says True on a T4 (7.5): by default it counts bf16 that torch emulates,
    slowly. Every place the course decides or reports precision asks this instead.
    """
    try:
        import torch

        if not torch.cuda.is_available():
            return False
        major, _minor = torch.cuda.get_device_capability()
        try:
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch < 2.3 has no including_emulation: the capability decides
            native = True
        return bool(native) and major >= 8
    except Exception:
        return False


def gpu() -> dict[str, object]:
    """The GPU torch sees: name, memory in GiB, compute capability, native bf16 and the precision the course loads."""
    try:
        import torch
    except ImportError:
        return {"device": "cpu", "name": "CPU only (torch missing)"}
    if not torch.cuda.is_available():
        return {"device": "cpu", "name": "CPU only", "torch_cuda": torch.version.cuda}
    props = torch.cuda.get_device_properties(0)
    return {
        "device": "cuda",
        "name": props.name,
        "memory_gib": round(props.total_memory / 2**30, 2),
        "compute_capability": f"{props.major}.{props.minor}",
        "bf16_native": native_bf16(),  # not torch.cuda.is_bf16_supported(): True on a T4, counting emulation
        "course_precision": default_precision("cuda"),
        "torch_cuda": torch.version.cuda,
    }


def default_precision(device: str) -> str:
    """The float dtype a device runs best: fp16 on CUDA (a T4 has no native bf16), fp32 on CPU (fp16 matmuls are slow there).

    It is both the precision `precision="auto"` loads at and the compute dtype of int8/nf4 models (their
    activations and every weight bitsandbytes leaves unquantized). fp16 on every CUDA GPU, bf16-capable or not,
    so one GPU's numbers compare with another's; ask for bf16 where `native_bf16()` is True.
    """
    return "fp16" if device == "cuda" else "fp32"


# ---------------------------------------------------------------- the GPUs the course decides for
@dataclass(frozen=True)
class GpuProfile:
    """One GPU the course can decide for: its memory as programs see it, and whether it computes bf16 natively."""

    key: str
    name: str
    capacity_bytes: int
    compute_capability: tuple[int, int]
    source: str

    @property
    def native_bf16(self) -> bool:
        """bf16 in hardware needs compute capability 8.0+ (a T4 is 7.5: torch would only emulate it)."""
        return self.compute_capability >= (8, 0)


PROFILES: dict[str, GpuProfile] = {
    "t4": GpuProfile("t4", "Tesla T4", int(14.56 * GiB), (7, 5),
                     "14.56 GiB, the total torch reports on a T4: its out-of-memory message reads 'GPU 0 has 14.56 "
                     "GiB total capacity' (public notebook outputs, recent PyTorch; older stacks printed 14.75 GiB)"),
    "l4": GpuProfile("l4", "NVIDIA L4", 23034 * MiB, (8, 9),
                     "23,034 MiB, the total nvidia-smi prints for an L4 (public nvidia-smi outputs, read 2026-12-01); "
                     "torch may report a little less"),
    "a100-40gb": GpuProfile("a100-40gb", "NVIDIA A100-SXM4-40GB", 40960 * MiB, (8, 0),
                            "40,960 MiB, the total nvidia-smi prints for an A100 40GB (public nvidia-smi outputs, "
                            "read 2026-12-01); torch may report a little less"),
}


def gib(n: float) -> str:
    """Bytes as GiB with two decimals, the unit torch's out-of-memory messages use."""
    return f"{n / GiB:.2f} GiB"


@dataclass(frozen=True)
class Ask:
    """A load a GPU is asked to hold: name, owner, predicted bytes, and cheaper options to suggest if refused."""

    name: str
    owner: str
    weights_bytes: int
    kv_bytes: int
    alternatives: tuple[tuple[str, int], ...] = ()  # (what to try, its weights + KV bytes)
    model: str = ""  # the model's id: a second copy of a resident model is refused, whatever its precision


@dataclass(frozen=True)
class Placement:
    """Where a load is decided and where it computes, when the two differ (a DEVICE the course's machinery defines).

    `gpu` is the card every decision is made for; `compute_device` and `compute_model` are what really runs.
    """

    device: str  # the DEVICE value, e.g. as the course's machinery spells it
    gpu: GpuProfile
    compute_device: str  # the torch device that computes
    compute_model: str  # the model that computes in place of any model too big for it
    label: str  # how outputs name this GPU, e.g. "Tesla T4 (predicted)"
    note: str  # one sentence for the notebook to print: what is decided, what computes, what is predicted
