"""The "What we measured" table that :func:`helpers.course.runner.record` shows: the headline rows, the rest named."""

from __future__ import annotations

import html
from typing import Any

HEADLINE_ROWS = 8  # the "What we measured" table shows at most this many rows; every metric is still recorded
LONGEST_CELL = 100  # a metric longer than this as text (a dict of dicts) is named below the table, not shown in it


def cell(value: Any) -> str:
    """One metric as one short cell: numbers to 6 significant digits, a list inline, a dict as `key: value · …`."""
    import numpy as np

    if isinstance(value, dict):
        return " · ".join(f"{k}: {cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(cell(v) for v in value) + "]"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return np.format_float_positional(value, precision=6, unique=True, fractional=False, trim="-")
    return str(value)


def headline_table(frame, clean: dict[str, Any]):
    """The frame (every metric, flattened), displayed as its headline rows in full plus a line naming the rest."""
    import pandas as pd

    names = [k for k, v in clean.items() if k != "measured_on" and v is not None and len(cell(v)) <= LONGEST_CELL]
    shown = names[: HEADLINE_ROWS - ("measured_on" in clean)] + (["measured_on"] if "measured_on" in clean else [])
    rest = [k for k in clean if k not in shown]
    head = pd.DataFrame({"value": [cell(clean[k]) for k in shown]}, index=pd.Index(shown, name="metric"))
    more = ""
    if rest:
        listed = ", ".join(rest[:6]) + (", …" if len(rest) > 6 else "")
        more = f"{len(rest)} more recorded for the course summary, not shown: {listed}"

    class HeadlineTable(pd.DataFrame):
        @property
        def _constructor(self):  # what pandas derives from it (a slice, a copy) is a plain DataFrame again
            return pd.DataFrame

        def _repr_html_(self) -> str | None:
            with pd.option_context("display.max_rows", None, "display.max_colwidth", None):
                return head._repr_html_() + (f"<p>{html.escape(more)}</p>" if more else "")

        def __repr__(self) -> str:
            with pd.option_context("display.max_rows", None, "display.max_colwidth", None):
                return repr(head) + (f"\n{more}" if more else "")

    return HeadlineTable(frame)
