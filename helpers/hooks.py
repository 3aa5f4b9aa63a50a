"""The one door between the lesson code and the course's machinery: what the loader asks, and who answers.

The loader (`settings`, `loadspec`, `selfhost`, `embeddings`) asks four things it cannot know by itself:
- `placement(device)`: for a DEVICE the machinery defines (`x:y`), which GPU a load is decided for and
  what really computes; None for `cpu`, `cuda`, `mps`.
- `ledger(device)`: the GPU's books, which count every model on the card and refuse a load that would not fit
  before a weight is read; None on a CPU.
- `computes(model, device)`: the model that computes when `model` is loaded there (itself, unless placed).
- `offline_model(name)`: the folder of a model the course builds with no hub (`smollm2-135m`, `standin`,
  `config:<name>`).
`helpers.course` installs the answers when the package is imported (helpers/__init__.py), so no lesson module
imports the machinery and the machinery can use the lessons. A learner can read the lessons without opening this.
"""

from __future__ import annotations

from typing import Any, Protocol

from .device import Placement


class Machinery(Protocol):
    """What `helpers.course` provides behind this door."""

    def placement(self, device: str) -> Placement | None: ...
    def ledger(self, device: str) -> Any | None: ...
    def computes(self, model: str) -> str: ...
    def device_help(self) -> str: ...
    def offline_model(self, name: str, config: Any = None) -> str: ...
    def api_answered_by(self, url: str) -> str: ...
    def guard_parameters(self) -> None: ...


_machinery: Machinery | None = None


def install(machinery: Machinery) -> None:
    """Put the course's machinery behind this door (helpers.course does, once, when helpers is imported)."""
    global _machinery
    _machinery = machinery


def _installed() -> Machinery:
    if _machinery is None:
        raise RuntimeError("helpers.hooks has nothing installed: `import helpers` installs the course's machinery "
                           "(a notebook does it with its first helpers import).")
    return _machinery


def placement(device: str | None) -> Placement | None:
    """For a DEVICE the course's machinery defines (`x:y`): which GPU to decide for, and what computes; else None.

    Raises ValueError, with the known names, for an `x:y` device it does not know.
    """
    if ":" not in (device or ""):
        return None
    return _installed().placement(device.strip().lower())


def ledger(device: str | None) -> Any | None:
    """The books of the GPU a load lands on (a CUDA card, or a device `placement` knows); None on a CPU."""
    if (device or "").strip().lower() != "cuda" and placement(device) is None:
        return None
    return _installed().ledger(device.strip().lower())


def computes(model: str, device: str | None) -> str:
    """The model that really computes when `model` is loaded on `device` (itself, unless `placement` swaps it)."""
    return model if placement(device) is None else _installed().computes(model)


def device_help() -> str:
    """What else DEVICE accepts besides auto/cpu/cuda/mps, in words, for error messages and the parameter table (docs/parameters.md)."""
    return _installed().device_help()


def offline_model(name: str, config: Any = None) -> str:
    """The folder of a model the course builds offline (`smollm2-135m`, `standin`, `config:<name>`), built once."""
    return _installed().offline_model(name, config)


def api_answered_by(url: str) -> str:
    """Who answers API calls sent to `url` (COURSE_API_URL) instead of api.mistral.ai, for labels: never 'La Plateforme'."""
    return _installed().api_answered_by(url)


def guard_parameters() -> None:
    """Stop a notebook whose papermill parameters carry a key (papermill saves them in the notebook it writes)."""
    _installed().guard_parameters()
