"""The one GPU probe: is there a CUDA GPU, does it compute bf16 natively, what precision suits a device.

Used by every notebook that decides or reports precision (00, 05–07) through `settings`, `selfhost` and `doctor`,
so the course never asks torch the same question two different ways (`is_bf16_supported()` alone says True
on a T4, counting emulation).
"""

from __future__ import annotations

from dataclasses import dataclass

GiB = 2**30
MiB = 2**20
TWIN_PREFIX = "twin:"  # DEVICE='twin:t4': decide as on a T4, compute on the CPU (helpers.gpu)



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


# ---------------------------------------------------------------- the GPUs the course decides for (and twins)
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
