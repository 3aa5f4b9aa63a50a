"""The figures of the course's measurements: RAG latency per stage (08, 10), serving under load (10), the T4 memory
budget (06), quantization's memory, speed and agreement (07). Each is legible at a glance: linear axes, units, the legend beside the data (checked by `legible`).
"""

from __future__ import annotations

from ..memory import Fit, GiB
from ..serving import LoadResult


def plot_latency(summaries: dict[str, dict[str, float]], title: str = "RAG latency per question"):
    """One bar per pipeline (e.g. local, API), its stages stacked at their p50 in ms on a linear axis; a whisker per
    stage runs on to that stage's p95, and the end of the bar says the whole question's p50 and p95."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator, StrMethodFormatter

    from ..figures import legend_outside

    stages = (("embed_ms", "embed the question", "#2563eb"), ("search_ms", "search the index", "#f59e0b"),
              ("generate_ms", "generate the answer", "#16a34a"))
    names = list(summaries)
    fig, ax = plt.subplots(figsize=(10, 1.6 + 0.9 * len(names)))
    widest = max(max(sum(summaries[n][f"{st}_p50"] for st, _, _ in stages[:i]) + summaries[n][f"{stage}_p95"]
                     for i, (stage, _, _) in enumerate(stages)) for n in names)
    for y, name in enumerate(names):
        s, left = summaries[name], 0.0
        for i, (stage, label, colour) in enumerate(stages):
            p50, p95 = s[f"{stage}_p50"], s[f"{stage}_p95"]
            if len(names) == 1:  # one pipeline: the legend can carry the numbers, even for a stage too thin to see
                label = f"{label}: p50 {_ms(p50)} ms, p95 {_ms(p95)} ms"
            ax.barh(y, p50, left=left, height=0.5, color=colour, label=label if y == 0 else None)
            whisker_y = y + 0.3 + 0.07 * i  # above the bar, one row per stage, so whiskers never hide each other
            ax.plot([left + p50, left + p95], [whisker_y] * 2, color=colour, linewidth=1.5, marker="|", markersize=6)
            left += p50
    ax.set_yticks(range(len(names)), [f"{n}\nquestion: p50 {_ms(summaries[n]['total_ms_p50'])} ms,\n"
                                      f"p95 {_ms(summaries[n]['total_ms_p95'])} ms" for n in names])
    ax.set_ylim(-0.5, len(names) - 0.2)
    ax.set_xlim(0, widest * 1.05)
    # few ticks: the legend beside the axes leaves it narrow, and five-digit millisecond labels must not touch
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.set_xlabel("milliseconds per question (bars: each stage's p50, stacked)")
    ax.set_title(title)
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color="#374151", marker="|", markersize=6, linewidth=1.5))
    labels.append("whisker: from a stage's p50 to its p95")
    legend_outside(ax, handles=handles, labels=labels, fontsize=8)
    fig.tight_layout()
    return fig


def plot_load(curves: dict[str, list[LoadResult]], title: str, labels: dict[str, str] | None = None):
    """Two panels against concurrency: throughput (requests/s) and latency (p50 solid, p95 dashed), per server.

    `labels` gives a curve a shorter legend entry (say what they share in `title`): a long one squeezes the axes."""
    import matplotlib.pyplot as plt

    from ..figures import legend_outside

    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 3.8))
    for key, results in curves.items():
        name = (labels or {}).get(key, key)
        xs = [r.concurrency for r in results]
        line, = left.plot(xs, [r.requests_per_s for r in results], marker="o", label=name)
        right.plot(xs, [r.p50_s for r in results], marker="o", color=line.get_color(), label=f"{name}: p50")
        right.plot(xs, [r.p95_s for r in results], marker="s", linestyle="--", color=line.get_color(),
                   label=f"{name}: p95")
    levels = sorted({r.concurrency for results in curves.values() for r in results})
    for ax, ylabel in ((left, "throughput (requests/s)"), (right, "latency per request (s)")):
        ax.set_xticks(levels)
        ax.set_xlabel("concurrent requests")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
    left.set_title("throughput", fontsize=10)
    right.set_title("latency", fontsize=10)
    left.legend(fontsize=8, frameon=False)  # the curves' names by the curves; the latency legend also says p50/p95
    legend_outside(right, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_budget(rows: list[Fit], title: str = "Mistral-7B on a T4"):
    """Stacked bars per context length: weights, KV cache, allowance, and what is left (or missing) of the GPU."""
    import matplotlib.pyplot as plt

    from ..figures import legend_outside

    fig, ax = plt.subplots(figsize=(10, 1.0 + 0.7 * len(rows)))
    labels = [f"{r.precision}, {r.context_tokens // 1024}k tokens" for r in rows]
    for y, r in enumerate(rows):
        left = 0.0
        for part, value, colour in (("weights", r.weights_bytes, "#2563eb"), ("KV cache", r.kv_cache_bytes, "#f59e0b"),
                                    ("allowance", r.overhead_bytes, "#9ca3af")):
            ax.barh(y, value / GiB, left=left, color=colour, label=part if y == 0 else None)
            left += value / GiB
        if r.fits:
            ax.barh(y, r.headroom_bytes / GiB, left=left, color="#86efac", label="left free" if y == 0 else None)
        ax.text(max(left, r.budget_bytes / GiB) + 0.2, y,
                f"{r.headroom_bytes / GiB:+.2f} GiB", va="center", color="#15803d" if r.fits else "#b91c1c")
    budget = rows[0].budget_bytes / GiB
    ax.axvline(budget, color="black", linestyle="--", label=f"usable memory {budget:.2f} GiB")
    ax.set_yticks(range(len(rows)), labels)
    ax.set_xlabel("GiB of GPU memory")
    ax.set_title(title)
    legend_outside(ax, fontsize=8)  # beside the bars: the margin labels at their ends are what the chart is for
    ax.set_xlim(0, max(r.total_bytes for r in rows) / GiB * 1.18)
    fig.tight_layout()
    return fig


def plot_quantization(results, baseline: str, title: str):
    """Four panels per precision: weights in memory (measured beside estimated, MB), tokens/s at batch 1, perplexity
    (lower is better) and top-1 agreement with the baseline; `results` has a row per precision with footprint_bytes,
    estimated_bytes, tokens_per_s, perplexity and top1_agreement (notebook 07's table)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(14, 3.6))
    x = list(range(len(results)))
    axes[0].bar([i - 0.2 for i in x], results.footprint_bytes / 1e6, 0.4, label="measured")
    axes[0].bar([i + 0.2 for i in x], results.estimated_bytes / 1e6, 0.4, label="estimated")
    axes[0].set(title="weights in memory", ylabel="MB")
    axes[0].set_ylim(0, results[["footprint_bytes", "estimated_bytes"]].max().max() / 1e6 * 1.35)  # room for the legend
    axes[0].legend(fontsize=8, loc="upper center", ncol=2)
    axes[1].bar(x, results.tokens_per_s, color="#f59e0b")
    axes[1].set(title="speed, batch 1", ylabel="tokens/s")
    axes[2].bar(x, results.perplexity, color="#7c3aed")
    axes[2].set(title="perplexity (lower is better)", ylabel="perplexity")
    axes[3].bar(x, results.top1_agreement, color="#16a34a")
    axes[3].set(title=f"top-1 agreement with {baseline}", ylabel="share of positions", ylim=(0, 1.05))
    for ax in axes:
        ax.set_xticks(x, list(results.index))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _ms(value: float) -> str:
    """Milliseconds as a reader wants them: 1,234 / 56 / 2.4 / 0.21."""
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"
