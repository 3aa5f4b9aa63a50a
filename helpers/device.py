"""The one GPU probe: is there a CUDA GPU, does it compute bf16 natively, what precision suits a device.

Used by every notebook that decides or reports precision (00, 05–07) through `settings`, `selfhost` and `doctor`,
so the course never asks torch the same question two different ways (`is_bf16_supported()` alone says True
on a T4, counting emulation).
"""

from __future__ import annotations


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
