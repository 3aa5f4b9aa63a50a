"""Figures you can read at a glance: a title that says what was measured, on which model, device and date; the
legend beside the data, never over it (`helpers.course.legible` checks that in CI).

Used by notebooks 02, 03, 05, 06, 07 and 08 (and by `charts.plot_budget`, `charts.plot_latency`).
"""

from __future__ import annotations

from typing import Any

# retrieval metrics as a reader names them, for axis ticks (the tables keep the column names the code uses)
METRIC_LABELS = {"hit_rate_at_1": "hit rate @1", "hit_rate_at_3": "hit rate @3", "hit_rate_at_5": "hit rate @5",
                 "mrr": "MRR"}


def caption(what: str, model: str, device: str, date: str | None = None) -> str:
    """A figure title: what was measured on the first line, then `model · device · date` (today when not given)."""
    if date is None:
        from datetime import datetime, timezone

        date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    return f"{what}\n{model} · {device} · {date}"


def served_by(cfg: Any) -> tuple[str, str]:
    """(model, device) that answered an API notebook's calls on this backend — for a figure title."""
    if cfg.backend == "mistral":
        return cfg.chat_model, cfg.api_name  # "La Plateforme", or what stands in for it (named so)
    if cfg.local_url:
        return f"the server at {cfg.local_url}", "its own hardware"
    from .device import gpu
    from .labels import model_label

    return model_label(cfg.computes), (gpu()["name"] if cfg.device == "cuda" else "CPU")  # "SmolLM2-135M-Instruct"


def legend_outside(ax: Any, **kwargs: Any):
    """Put the legend to the right of the axes, outside the data, so it can never cover a bar or a label."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, **kwargs)
