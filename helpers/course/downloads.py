"""What a self-hosting notebook downloads on a Colab GPU, how big, and how long it may take — said before it starts.

Sizes come from the configs the course ships (data/configs, through `helpers.memory`: parameters × 2 bytes, the
16-bit weights the hub stores), not from typed numbers. Times are predictions from Colab download speeds that others
reported, each dated and cited below; nothing here is measured by the course.

The Hugging Face cache (HF_HOME, `~/.cache/huggingface` by default) belongs to one Colab runtime: a model downloaded
once is read from it by every later load in that runtime (a re-run, a notebook's second precision, the endpoint), but
each notebook opened in Colab gets its own runtime, whose disk starts empty. `DRIVE=True` in the setup cell's last line
(helpers/course/colab.py) keeps that cache on Google Drive instead, so later notebooks and runtimes find what an earlier
one downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .. import memory
from ..loadspec import HUB_CONFIGS
from ..settings import DEFAULT_HUB_MODEL, MISTRAL_7B


@dataclass(frozen=True)
class Speed:
    """A reported Colab download speed from the Hugging Face hub: bytes per second, and who said it, when."""

    label: str
    bytes_per_s: float
    source: str


# Reported, not measured here. The first is Colab's link in a good hour, the second a bad day on the hub.
COLAB_SPEEDS = (
    Speed("typical", 10e9 / 180, "on Colab '10GB files can be downloaded in ~3 minutes (tested via wget)', "
          "huggingface/huggingface_hub#4085, 2026-04-11"),
    Speed("slow day", 1.11e9 / 1200, "on Colab with a T4, a 1.11 GB model took about 20 minutes, "
          "huggingface/huggingface_hub#4528, 2026-07-14"),
)
# What `LOCAL_MODEL='auto'` loads on a Colab T4 with HF_TOKEN, per self-hosting notebook (settings.resolve's
# auto_model: 06 and 07 pass Mistral-7B for the memory story, the others keep the default).
COLAB_MODELS = {"06": MISTRAL_7B, "07": MISTRAL_7B, "08": DEFAULT_HUB_MODEL, "09": DEFAULT_HUB_MODEL,
                "10": DEFAULT_HUB_MODEL}


def download_bytes(hub_id: str) -> int:
    """Bytes of a model's 16-bit weights as the hub stores them, counted from the config the course ships."""
    if hub_id not in HUB_CONFIGS:
        raise ValueError(f"{hub_id!r}: the course ships configs for {sorted(HUB_CONFIGS)} only")
    return memory.weight_bytes(memory.load_config(HUB_CONFIGS[hub_id]), "fp16")


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def in_cache(hub_id: str) -> bool:
    """True when this runtime's Hugging Face cache holds the model's weights index (it was downloaded here before)."""
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(hub_id, name), str)
               for name in ("model.safetensors.index.json", "model.safetensors"))


def colab_plan(notebook: str, loads: str | None = None) -> str:
    """Say what `notebook` ('06'…'10') downloads on a Colab T4 with HF_TOKEN, how big, how long; and what this run does
    (one line when this run downloads none of it)."""
    hub_id = COLAB_MODELS[notebook[:2]]
    size = download_bytes(hub_id)
    if loads is not None and loads not in HUB_CONFIGS and ("/" not in loads or os.path.exists(loads)):
        # a packaged or local model: nothing to download, so one line (the Colab figures are in the README's table)
        fast, slow = (_duration(size / s.bytes_per_s) for s in COLAB_SPEEDS)
        typical, bad = (f"{s.bytes_per_s / 1e6:.1f} MB/s" for s in COLAB_SPEEDS)
        return (f"This run loads {loads}: nothing is downloaded. (On a Colab T4 with HF_TOKEN this notebook downloads "
                f"{hub_id}, {size / 1e9:.1f} GB: about {fast} at Colab's usual {typical}, but {slow} at the {bad} "
                "one user reported on a bad day, so fetch it before you need it; sources: the README's download table.)")
    times = "; ".join(f"{_duration(size / s.bytes_per_s)} at {s.bytes_per_s / 1e6:.1f} MB/s ({s.label}: {s.source})"
                      for s in COLAB_SPEEDS)
    lines = [f"On a Colab T4 with HF_TOKEN this notebook downloads {hub_id}: {size / 1e9:.1f} GB, estimated from "
             f"its shipped config (helpers.memory, parameters × 2 bytes). Predicted: {times}.",
             "Once in this runtime's Hugging Face cache it is not downloaded again in this runtime; a new runtime "
             "starts empty unless the setup cell's last line says DRIVE=True (the cache then lives on Google Drive)."]
    if loads is None:
        pass
    elif loads in HUB_CONFIGS:  # the planned model, or another the course sizes
        other = "" if loads == hub_id else f" instead ({download_bytes(loads) / 1e9:.1f} GB)"
        lines.append(f"This run loads {loads}{other}: "
                     + ("in this runtime's cache already, read from disk, not downloaded." if in_cache(loads)
                        else "not in this runtime's cache yet, so the first load downloads it."))
    elif "/" in loads and not os.path.exists(loads):
        lines.append(f"This run loads {loads} from the hub unless it is cached (no shipped config: size not estimated).")
    return "\n".join(lines)


def readme_table() -> str:
    """The README's table of what each self-hosting notebook downloads on Colab (python -m helpers.course.downloads)."""
    rows = ["| notebooks | download on a Colab T4 with `HF_TOKEN` | size (estimated) | "
            + " | ".join(f"at {s.bytes_per_s / 1e6:.1f} MB/s ({s.label})" for s in COLAB_SPEEDS) + " |",
            "|---|---|---:|" + "---:|" * len(COLAB_SPEEDS)]
    notebooks: dict[str, list[str]] = {}  # one row per model: the notebooks that download it
    for nb, hub_id in COLAB_MODELS.items():
        notebooks.setdefault(hub_id, []).append(nb)
    for hub_id, nbs in notebooks.items():
        size = download_bytes(hub_id)
        rows.append(f"| {', '.join(nbs)} | `{hub_id}` | {size / 1e9:.1f} GB | "
                    + " | ".join(_duration(size / s.bytes_per_s) for s in COLAB_SPEEDS) + " |")
    sources = "; ".join(f"{s.label}: {s.source}" for s in COLAB_SPEEDS)
    return "\n".join(rows) + f"\n\nSpeeds as reported, not measured here — {sources}."


if __name__ == "__main__":
    print(readme_table())
