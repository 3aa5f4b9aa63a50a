"""Where transformers + accelerate would put each part of a model on a GPU, asked of the libraries themselves.

Course machinery: the GPU twin asks this before it admits a
load with `device_map="auto"`. Nothing is allocated: the model is built on PyTorch's meta device, and transformers'
own device-map inference (`transformers.integrations.accelerate._get_device_map`, the function `from_pretrained`
calls) decides the placement. The only thing replaced is the question "how much memory is free on each device",
which on a machine without a GPU has no answer: `accelerate_max_memory` is patched, for the duration of one call, to
answer as a GPU with `free_bytes` free would.

Read in transformers 5.25.0 / accelerate 1.16.0 (2026-12-06): with no `max_memory`, transformers asks accelerate for
the free memory of every device, then `get_balanced_memory` keeps 90% of a single GPU's free memory for weights ("10%
for the buffer to avoid OOM"); with an explicit `max_memory`, the given figures are used as they are. That 10% is why
FP16 Mistral-7B (13.50 GiB) spills its last layers to the CPU of a T4 under plain `device_map="auto"`.
"""

from __future__ import annotations

import logging
from typing import Any
from unittest import mock

DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}
# What the patched probe reports for the CPU: plenty, so nothing is forced to disk (Colab's T4 VM has 12.7 GB RAM;
# the question here is only what leaves GPU 0).
HOST_BYTES = 64 * 2**30


def meta_model(config: Any, dtype: str = "fp16"):
    """The model a config describes, built on the meta device (shapes and dtypes only, no memory)."""
    import torch
    import transformers

    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: use one of {', '.join(DTYPES)}")
    arch = (getattr(config, "architectures", None) or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    if cls is None:  # no (known) architecture named: the causal-LM auto class decides
        cls = transformers.AutoModelForCausalLM
        with torch.device("meta"):
            return cls.from_config(config, dtype=getattr(torch, DTYPES[dtype]))
    with torch.device("meta"):
        return cls._from_config(config, dtype=getattr(torch, DTYPES[dtype]))


def accelerate_placement(config: Any, free_bytes: int, dtype: str = "fp16",
                         max_memory: dict | None = None, device_map: str | dict = "auto") -> dict[str, Any]:
    """Ask transformers' own device-map inference where each module goes on a GPU with `free_bytes` free.

    `max_memory=None` is what `from_pretrained(..., device_map="auto")` does; pass `max_memory={0: ...}` (what a
    careful loader passes) or `device_map={"": 0}` to see the alternatives. Returns the device map, the modules placed
    off GPU 0, whether the whole model stays on GPU 0, and the model's size in bytes at `dtype` (accelerate does
    not check that an explicit map fits: `weights_fit_free` does).
    """
    from accelerate.utils import get_max_memory as real_max_memory
    from transformers.integrations import accelerate as hf_accelerate

    if free_bytes <= 0:
        raise ValueError(f"free_bytes={free_bytes}: give the GPU's free memory in bytes (e.g. 14.16 * 2**30)")
    model = meta_model(config, dtype)

    def gpu_probe(requested=None):
        # accelerate.utils.get_max_memory as it answers on a one-GPU machine: the free memory of GPU 0 and the host's
        # RAM when nothing is requested, the caller's figures (strings converted) when something is.
        return {0: int(free_bytes), "cpu": HOST_BYTES} if requested is None else real_max_memory(dict(requested))

    quiet = logging.getLogger("accelerate.utils.modeling")  # "Device 0 is not available": true here, beside the point
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with mock.patch.object(hf_accelerate, "accelerate_max_memory", gpu_probe):
            placed = hf_accelerate._get_device_map(model, device_map, max_memory, None)
    finally:
        quiet.setLevel(level)
    placed = dict(placed)
    off_gpu = sorted(name for name, where in placed.items() if where not in (0, "cuda", "cuda:0"))
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    size += sum(b.numel() * b.element_size() for b in model.buffers())
    return {"device_map": placed, "off_gpu": off_gpu, "all_on_gpu0": not off_gpu, "model_bytes": int(size),
            "weights_fit_free": size <= free_bytes,
            "free_bytes": int(free_bytes), "dtype": dtype, "max_memory": max_memory,
            "asked": "transformers.integrations.accelerate._get_device_map on the meta-device model"}
