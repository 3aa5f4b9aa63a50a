"""helpers.figures: the legibility check finds each fault the course's figures once had, and passes the fixes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from helpers import figures, memory  # noqa: E402
from helpers.course import (
    charts,
    legible,  # noqa: E402
)

LATENCY = {"embed_ms_p50": 150.0, "embed_ms_p95": 480.0, "search_ms_p50": 0.2, "search_ms_p95": 0.24,
           "generate_ms_p50": 260.0, "generate_ms_p95": 360.0, "total_ms_p50": 420.0, "total_ms_p95": 800.0}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_caption_names_what_model_device_and_date():
    assert figures.caption("RAG latency", "smollm2-135m", "CPU", "2026-11-25") == \
        "RAG latency\nsmollm2-135m · CPU · 2026-11-25"
    assert figures.caption("x", "m", "d").split(" · ")[-1].count("-") == 2  # today's date by default


def test_overlapping_tick_labels_are_found_and_fewer_ticks_fix_them():
    costs = pd.Series({"escalate on failure": 0.00151, "always mistral-large-latest": 0.00110})
    ax = costs.plot.barh(figsize=(6, 2), title="USD for the four tasks")  # 02's cost chart as it was
    ax.set_xlabel("USD")
    plt.tight_layout()
    assert any("tick labels" in p for p in legible.problems(ax.figure))
    ax.xaxis.set_major_locator(plt.MaxNLocator(4))
    assert legible.problems(ax.figure) == []


def test_a_legend_over_bars_is_found_and_outside_it_is_not():
    scores = pd.DataFrame({"fixed": [0.53, 0.85, 0.94, 0.71], "sentences": [0.72, 0.94, 1.0, 0.84]},
                          index=["hit_rate_at_1", "hit_rate_at_3", "hit_rate_at_5", "mrr"])
    ax = scores.plot.bar(figsize=(7, 3), rot=0, ylim=(0, 1.05), title="retrieval")  # 04's chart as it was
    ax.set_ylabel("share / MRR")
    ax.legend(title="chunking")
    plt.tight_layout()
    assert any("legend covers" in p for p in legible.problems(ax.figure))
    figures.legend_outside(ax, title="chunking")
    plt.tight_layout()
    assert legible.problems(ax.figure) == []


def test_log_axes_and_missing_units_and_titles_are_found():
    fig, (plain, logged) = plt.subplots(1, 2)
    plain.plot([1, 2, 3], [10, 100, 1000])
    logged.plot([1, 2, 3], [10, 100, 1000])
    logged.set_yscale("log")
    found = legible.problems(fig)
    assert any("y axis is log" in p for p in found) and any("no title" in p for p in found)
    assert any("no label with its unit" in p for p in found)


def test_t4_budget_chart_keeps_its_margin_labels_clear():
    rows = [memory.fits("mistral-7b-instruct-v0.3", "fp16", n, gpu="T4") for n in (4096, 8192, 32768)]
    fig = charts.plot_budget(rows, title="budget, estimated")
    assert legible.problems(fig) == []
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert len(labels) == 3 and all(t.endswith("GiB") for t in labels)


@pytest.mark.parametrize("pipelines", [1, 2])
def test_latency_chart_stacks_p50_per_stage_on_a_linear_axis(pipelines):
    summaries = {"local (cpu)": LATENCY, "API (mistral-small-latest)": {k: v * 1.5 for k, v in LATENCY.items()}}
    summaries = dict(list(summaries.items())[:pipelines])
    fig = charts.plot_latency(summaries, title=figures.caption("RAG latency", "m", "CPU", "2026-11-25"))
    ax = fig.axes[0]
    assert len(fig.axes) == 1 and ax.get_xscale() == "linear"  # one panel: the stages compare on one axis
    bars = [p for p in ax.patches if p.get_height() > 0]
    assert len(bars) == 3 * pipelines
    # stacked: each stage starts where the one before ends, at its p50
    first = sorted(bars[:3], key=lambda b: b.get_x())
    assert first[1].get_x() == pytest.approx(LATENCY["embed_ms_p50"])
    assert first[2].get_x() + first[2].get_width() == pytest.approx(
        LATENCY["embed_ms_p50"] + LATENCY["search_ms_p50"] + LATENCY["generate_ms_p50"])
    whisker_ends = sorted(max(line.get_xdata()) for line in ax.lines)[: 3 * pipelines]
    assert LATENCY["embed_ms_p95"] in whisker_ends  # the embed whisker reaches its p95
    assert legible.problems(fig) == []


def test_a_figure_jupyter_has_shown_and_closed_can_still_be_checked():
    from matplotlib.backend_bases import FigureCanvasBase

    fig, ax = plt.subplots()
    ax.plot([1, 2], [1, 2])
    plt.close(fig)
    FigureCanvasBase(fig)  # what the inline backend leaves behind: a canvas that cannot render
    assert any("no title" in p for p in legible.problems(fig))


@pytest.mark.parametrize("generate_ms", [21_822.0, 137_000.0, 950.0])
def test_latency_chart_ticks_never_touch_with_a_long_title_and_five_digit_milliseconds(generate_ms):
    """08 failed a run this way: a batch's 21,822 ms beside the outside legend put '10000' and '12500' on top of
    each other. Few ticks, with thousands separators, whatever the scale."""
    summary = {**LATENCY, "generate_ms_p50": generate_ms, "generate_ms_p95": generate_ms,
               "total_ms_p50": generate_ms + 8, "total_ms_p95": generate_ms + 12}
    title = figures.caption("RAG latency per question: 20 questions, hybrid k=3, JSON answers with sources, generated "
                            "in batches of 20", "SmolLM2-135M-Instruct", "CPU only", "2026-12-02")
    fig = charts.plot_latency({"local (cpu)": summary}, title=title)
    assert legible.problems(fig) == []


def test_quantization_chart_is_legible_and_its_run_checks_can_fail():
    import pandas as pd

    from helpers.course.evals import quality

    results = pd.DataFrame({"footprint_bytes": [538e6, 170e6, 110e6], "estimated_bytes": [538e6, 170e6, 110e6],
                            "tokens_per_s": [30.0, 4.0, 9.0], "perplexity": [12.0, 12.3, 13.1],
                            "top1_agreement": [1.0, 0.93, 0.81]}, index=["fp32", "int8", "nf4"])
    fig = charts.plot_quantization(results, "fp32", title="fp32 vs int8 vs nf4\nmodel · CPU · date")
    assert legible.problems(fig) == [] and [t.get_text() for t in fig.axes[0].get_xticklabels()] == list(results.index)
    assert quality.run_problems(results, "fp32", real_model=True) == []
    results.loc["nf4", "footprint_bytes"] = 200e6  # bigger than int8, and 80% off its estimate
    found = quality.run_problems(results, "fp32", real_model=True)
    assert any("not within 1%" in p for p in found) and "nf4 is not smaller than int8" in found
