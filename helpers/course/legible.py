"""Is a figure legible? The check every notebook's last section runs on its figures (CI fails an unreadable one):
no legend over the data, no overlapping tick labels, a unit on every numeric axis."""

from __future__ import annotations

from typing import Any


def _overlap(a: Any, b: Any, gap: float = 0.0) -> bool:
    """True when two display-space boxes share some area, or come closer than `gap` pixels."""
    return a.x0 < b.x1 + gap and b.x0 < a.x1 + gap and a.y0 < b.y1 + gap and b.y0 < a.y1 + gap


def _data_boxes(ax: Any, renderer: Any) -> list[Any]:
    """Boxes of what a legend must not hide: bars and other patches, text labels, plotted points."""
    boxes = []
    for artist in [*ax.patches, *ax.texts, *ax.collections]:
        if not artist.get_visible():
            continue
        box = artist.get_window_extent(renderer)
        if box.width > 0.5 and box.height > 0.5:
            boxes.append(box)
    for line in ax.lines:
        if line.get_visible() and len(line.get_xydata()):
            xy = ax.transData.transform(line.get_xydata())
            from matplotlib.transforms import Bbox

            boxes.extend(Bbox.from_extents(x - 1, y - 1, x + 1, y + 1) for x, y in xy)
    return boxes


def problems(fig: Any) -> list[str]:
    """What makes `fig` hard to read: a legend over data, overlapping tick labels, a log axis, no title or units.

    Empty when the figure passes. The notebooks assert it on every figure they draw.
    """
    if not hasattr(fig.canvas, "get_renderer"):  # a figure Jupyter has shown and closed: draw it off-screen again
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found: list[str] = []
    axes = [ax for ax in fig.axes if ax.get_visible()]
    titled = bool(fig._suptitle and fig._suptitle.get_text()) or any(ax.get_title() for ax in axes)
    if not titled:
        found.append("no title: say what was measured, on which model, device and date")
    legends = [ax.get_legend() for ax in axes if ax.get_legend() is not None] + list(fig.legends)
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in axes:
            if any(_overlap(box, other, gap=-0.5) for other in _data_boxes(ax, renderer)):
                found.append(f"the legend covers data or labels in the axes titled {ax.get_title()!r}")
    for ax in axes:
        name = ax.get_title() or "(untitled axes)"
        for which, scale in (("x", ax.get_xscale()), ("y", ax.get_yscale())):
            if scale != "linear":
                found.append(f"{name}: {which} axis is {scale}, not linear")
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
            for ta, tb in zip(labels, labels[1:], strict=False):
                # closer than a quarter of the font size reads as one run of digits ("0.00000.0002…")
                gap = 0.25 * ta.get_fontsize() * fig.dpi / 72
                if _overlap(ta.get_window_extent(renderer), tb.get_window_extent(renderer), gap=gap):
                    found.append(f"{name}: tick labels {ta.get_text()!r} and {tb.get_text()!r} overlap")
        numeric = [axis for axis in (ax.xaxis, ax.yaxis) if not _categorical(axis)]
        if any(not axis.get_label_text() for axis in numeric) and not _units_in_title(ax.get_title()):
            found.append(f"{name}: a numeric axis has no label with its unit")
    return found


def _categorical(axis: Any) -> bool:
    """An axis whose ticks are names (bar categories), not numbers — it needs no unit."""
    texts = [t.get_text().replace("−", "-").replace(",", "") for t in axis.get_ticklabels() if t.get_text()]
    if not texts:
        return True
    for text in texts:
        try:
            float(text.lstrip("$").rstrip("%"))
        except ValueError:
            return True
    return False


def _units_in_title(title: str) -> bool:
    """A panel titled like 'weights (MB)' states its unit."""
    return "(" in title and ")" in title


def assert_legible(fig: Any) -> None:
    """Raise with the list of problems when `fig` is hard to read (used in the notebooks' CI checks)."""
    found = problems(fig)
    if found:
        raise AssertionError("figure not legible:\n- " + "\n- ".join(found))
