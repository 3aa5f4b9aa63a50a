"""Load open-weight models for self-hosting: one loader for the notebooks and the local endpoint.

`load_model("standin" | hub id | path, precision=...)` returns the tokenizer and model, loaded with
`from_pretrained` exactly as for Mistral-7B-Instruct; `load_embedder` does the same for
sentence-transformers models, using the packaged all-MiniLM-L6-v2 copy when it is the one asked for.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .settings import DEFAULT_LOCAL_EMBED_MODEL, STANDIN, resolve_device
from .standin import is_standin, minilm_path, standin_path

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8", "nf4")


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why and what to try next."""


@dataclass
class LoadedModel:
    """A tokenizer + causal LM pair with what it is and where it runs."""

    model: Any
    tokenizer: Any
    name: str
    path: str
    precision: str
    device: str

    @property
    def is_standin(self) -> bool:
        return is_standin(self.path) or self.name == STANDIN

    @property
    def context_length(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 0) or 0)


def model_path(model: str) -> str:
    """`standin` → the built stand-in folder; anything else (hub id or local path) unchanged."""
    return str(standin_path()) if model == STANDIN else model


def default_precision(device: str) -> str:
    """fp32 on CPU (fp16 matmuls are slow or missing there); fp16 on CUDA (a T4 has no bf16)."""
    return "fp16" if device == "cuda" else "fp32"


def load_model(model: str = STANDIN, precision: str = "auto", device: str = "auto") -> LoadedModel:
    """Load tokenizer + model (hub id, local path or `standin`) at a precision, on a device."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if precision not in PRECISIONS:
        raise ModelLoadError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}.")
    device = resolve_device(device)
    if precision == "auto":
        precision = default_precision(device)
    path = model_path(model)
    if not (Path(path).exists() or "/" in path):
        raise ModelLoadError(
            f"Unknown model {model!r}: not a local folder and not a hub id (owner/name). "
            f"Use '{STANDIN}' offline, or e.g. 'mistralai/Mistral-7B-Instruct-v0.3' with network access."
        )
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    kwargs: dict[str, Any] = {}
    if precision in dtypes:
        kwargs["dtype"] = dtypes[precision]
    if device == "cuda":
        kwargs["device_map"] = "auto"
    tokenizer = AutoTokenizer.from_pretrained(path)
    lm = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if device != "cuda":
        lm = lm.to(device)
    lm.eval()
    return LoadedModel(model=lm, tokenizer=tokenizer, name=model, path=path, precision=precision, device=device)


def embedder_path(model_id: str = DEFAULT_LOCAL_EMBED_MODEL) -> str:
    """The packaged offline copy for all-MiniLM-L6-v2 (same weights as the hub's), else the id unchanged."""
    if model_id in (DEFAULT_LOCAL_EMBED_MODEL, "all-MiniLM-L6-v2"):
        return str(minilm_path())
    return model_id


def load_embedder(model_id: str = DEFAULT_LOCAL_EMBED_MODEL, device: str = "auto"):
    """A sentence-transformers model (all-MiniLM-L6-v2 comes from its offline package)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(embedder_path(model_id), device=resolve_device(device))
