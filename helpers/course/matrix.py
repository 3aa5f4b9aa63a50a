"""Notebook 10's decision matrix: every cell filled from this run's measurements, each with its label and source;
and the sentences that say what 10's load table and matrix show, computed from the same numbers."""
from __future__ import annotations

import re
from collections import Counter
from typing import Any

from .. import memory, serving
from .. import vllm as vllm_serve
from ..client import served_model
from ..serving import cell
from .runner import recorded_by


def decision_matrix(*, costs: dict[str, float], price: Any, at_1: Any, best_rps: float, label: str, course_url: str,
                    startup_s: float, curves: dict, servers: dict, api: str, vllm: Any, vllm_gpu: Any, where: str,
                    date: str, hourly_usd: float, gpu_hourly_usd: float,
                    max_tokens: int) -> dict[str, dict[str, dict[str, Any]]]:
    """The source post's API-vs-self-hosted matrix, rebuilt: {backend: {factor: cell}}, each cell labelled
    measured / estimated / literature / not measured, with where and when.

    `costs` holds the two costs per 1,000 requests the notebook computed ("API", "course endpoint"); `price` is the
    API tier they were priced at, `at_1` the load result at one client, `best_rps` the best throughput measured."""
    here = f"{where}, {date}"
    course_lm = served_model(course_url)
    post = "the source post, collected 2026-11-25"  # "From API to Self-Hosted in One Afternoon" (undated)
    matrix = {
        "API (La Plateforme)": {
            "setup effort": cell("minutes: an account and a key", "literature", post),
            "cost per 1,000 requests": cell(f"${costs['API']:.4f} ({price.alias}, {at_1.mean_prompt_tokens:.0f}+"
                                            f"{at_1.mean_completion_tokens:.0f} tokens; not comparable: another model)",
                                            "estimated", f"prices as of {price.prices_as_of} × this run's tokens"),
            "latency p50 / p95 (1 client)": cell("not measured here (no MISTRAL_API_KEY)", "not measured", date),
            "memory on your side": cell("none: nothing runs locally", "literature", post),
            "function calling, JSON": cell("built in", "literature", "the source post and Mistral's docs, collected "
                                           "2026-11-25"),
            "data leaving the machine": cell("every prompt and document, to Mistral's servers", "literature", post),
        },
        f"course endpoint ({label})": {
            "setup effort": cell(f"{startup_s:.1f} s to load and serve after `make install` (install and model "
                                 "download not counted)", "measured", here),
            "cost per 1,000 requests": cell(
                f"${costs['course endpoint']:.4f} at {best_rps:.2f} req/s and ${hourly_usd}/h, "
                "busy every hour (not comparable: another model)", "estimated", f"HOURLY_USD ÷ throughput on {here}"),
            "latency p50 / p95 (1 client)": cell(f"{at_1.p50_s:.2f} s / {at_1.p95_s:.2f} s ({max_tokens} tokens)",
                                                 "measured", here),
            "memory on your side": cell(f"{memory.human(course_lm.model.get_memory_footprint())} of weights "
                                        f"({course_lm.precision})", "measured", f"get_memory_footprint(), {here}"),
            "function calling, JSON": tools_cell(label),
            "data leaving the machine": cell(f"none: served on {course_url}", "measured", f"loopback, {date}"),
        },
        f"vLLM + {vllm.checkpoint.hub_id.split('/')[-1]} (GPU)": {
            "setup effort": cell("one command: the `vllm serve` printed in section 1", "estimated",
                                 f"the course's vLLM recipe for the {vllm_gpu.name}, not run here, {date}"),
            "cost per 1,000 requests": cell(f"GPU_HOURLY_USD (${gpu_hourly_usd}/h) ÷ its throughput, once measured",
                                            "not measured", "no throughput without a server at LOCAL_URL"),
            "latency p50 / p95 (1 client)": cell("measured only at LOCAL_URL", "not measured",
                                                 "no server at LOCAL_URL in this column"),
            "memory on your side": cell(f"{vllm_serve.gib(vllm.weights_bytes)} of weights + "
                                        f"{vllm_serve.gib(vllm.kv_budget_bytes)} of KV cache on the {vllm_gpu.name}",
                                        "estimated", f"vLLM's memory model from the config, {date}"),
            "function calling, JSON": cell("--tool-call-parser mistral; structured outputs", "literature",
                                           "vLLM docs (tool_calling.md), collected 2026-11-25; the flag read in "
                                           "vLLM 0.34.0's source, 2026-12-06"),
            "data leaving the machine": cell("none beyond your infrastructure", "literature", post),
        },
    }
    for name in servers:  # the servers measured besides the course endpoint fill their own cells
        if name == api:
            matrix["API (La Plateforme)"]["latency p50 / p95 (1 client)"] = cell(
                f"{curves[api][0].p50_s:.2f} s / {curves[api][0].p95_s:.2f} s", "measured", f"{api}, {date}")
        elif name != "course endpoint":
            ext_rps = max(r.requests_per_s for r in curves[name])
            matrix[name] = {
                "cost per 1,000 requests": cell(f"${serving.selfhost_cost_per_1000(gpu_hourly_usd, ext_rps):.4f}",
                                                "estimated", f"GPU_HOURLY_USD ÷ {name}"),
                "latency p50 / p95 (1 client)": cell(f"{curves[name][0].p50_s:.2f} s / {curves[name][0].p95_s:.2f} s",
                                                     "measured", f"{name}, {date}")}
    if serving.unlabelled(matrix):  # every cell says how we know it, and where from
        raise ValueError(f"cells without a label or a source: {serving.unlabelled(matrix)}")
    undated = [f"{b} / {f}" for b, row in matrix.items() for f, c in row.items()
               if c["label"] == "literature" and not re.search(r"\d{4}-\d{2}-\d{2}", c["where"])]
    if undated:  # a figure from the literature is dated data: the date it was collected
        raise ValueError(f"literature cells without a date: {undated}")
    return matrix


def tools_cell(label: str) -> dict[str, Any]:
    """The course endpoint's function-calling cell: notebook 09's measurement when this course run holds it.

    `make course` writes each notebook's record beside the others (runs/<time>/metrics/NN_name.json); 09's counts
    only if it measured the same model on the course endpoint. Run alone, 10 points at 09 instead."""
    measured = recorded_by("09")
    source = measured.get("measured_on", "")
    if label in source and "course endpoint" in source and "schema_valid" in measured:
        valid, right = measured["schema_valid"], measured.get("records_right")  # right: "k of n" per mode
        values = f" ({right['constrained']} with the right values)" if right else ""
        return cell(f"constrained decoding: {valid['constrained']:.0%} of JSON replies schema-valid{values}, "
                    f"{valid['free']:.0%} without it (notebook 09)", "measured", f"notebook 09 in this course run: {source}")
    return cell("constrained decoding in the endpoint: measured in notebook 09 (every constrained reply "
                "schema-valid, asserted there), not in this run", "not measured", "notebook 09")


def load_conclusion(on: list, off: list, peaks: dict[str, list[int]]) -> str:
    """What 10's load table and chart show, from their numbers: batching on against off at the highest load, and
    why the one-client level measures noise."""
    top_on, top_off = on[-1], off[-1]
    said = (f"At {top_on.concurrency} concurrent requests: {top_on.requests_per_s:.2f} requests/s with batching on, "
            f"{top_off.requests_per_s:.2f} off ({top_on.requests_per_s / top_off.requests_per_s:.1f}×); median "
            f"latency {top_on.p50_s:.2f} s on, {top_off.p50_s:.2f} s off (off, each request waits its turn).")
    if on[0].concurrency == 1 and top_on.concurrency > 1:  # one batch of them against one request alone
        said += (f"\nBatching on, the median request at {top_on.concurrency} concurrent took {top_on.p50_s / on[0].p50_s:.1f}× "
                 f"as long as one alone ({on[0].p50_s:.2f} s), not {top_on.concurrency}×.")
    if on[0].concurrency == 1 and peaks["on"][0] == peaks["off"][0] == 1:
        said += (f"\nAt 1 the largest batch is 1 either way: nothing to batch, so its on ÷ off "
                 f"({on[0].requests_per_s / off[0].requests_per_s:.2f}) is noise.")
    few = [r for r in on if r.requests < 20]
    if few:  # np.percentile interpolates: below 20 samples, p95 sits between the two slowest requests
        said += (f"\np95 rests on {', '.join(str(r.requests) for r in few)} requests at {', '.join(str(r.concurrency) for r in few)}"
                 " concurrent: under 20, it is all but the slowest request, not a tail estimate.")
    return said


def choose(api_model: str, at_1: Any, on: list, gpu_hourly_usd: float) -> str:
    """Choose the API when…, self-host when…, from this run's numbers: the traffic at which a GPU rented at
    `gpu_hourly_usd` costs what `api_model` does for this run's request size, and the batching it takes to get there."""
    from ..catalog import tier

    per_1000 = serving.api_cost_per_1000(api_model, at_1.mean_prompt_tokens, at_1.mean_completion_tokens)
    break_even = gpu_hourly_usd / 3.6 / per_1000  # requests/s at which the hourly price equals the API's
    if not break_even:
        return ("At GPU_HOURLY_USD=0 (a GPU already paid for) self-hosting costs nothing more at any traffic: choose "
                "on data and effort, as the source post does.")
    return (f"Choose the API when your traffic stays below about {break_even:,.1f} requests/s around the clock "
            f"({round(break_even * 86400, -4):,.0f} a day): below that, a GPU at GPU_HOURLY_USD=${gpu_hourly_usd}/h costs more "
            f"than {api_model} at ${per_1000:.4f} per 1,000 requests of this run's {at_1.mean_prompt_tokens:.0f}+"
            f"{at_1.mean_completion_tokens:.0f} tokens (prices as of {tier(api_model).prices_as_of}; longer requests "
            "cost more on both sides).\n"
            f"Self-host when you keep a GPU that busy (a server at LOCAL_URL measures whether yours can), and that "
            f"takes concurrent requests and batching: here the "
            f"course endpoint did {on[0].requests_per_s:.2f} requests/s for 1 client, {on[-1].requests_per_s:.2f} "
            f"for {on[-1].concurrency} with batching on.")


def matrix_conclusion(matrix: dict[str, dict[str, dict[str, Any]]], costs: dict[str, float], label: str,
                      api_model: str) -> str:
    """What 10's matrix can and cannot say, counted from its cells."""
    kinds = Counter(c["label"] for row in matrix.values() for c in row.values())
    cheaper = min(costs, key=costs.get)
    return (f"{sum(kinds.values())} cells: " + ", ".join(f"{n} {k}" for k, n in kinds.most_common()) + ".\n"
            f"Per 1,000 requests the {cheaper} comes out cheaper here (course endpoint ${costs['course endpoint']:.4f}, "
            f"API ${costs['API']:.4f}), but the two serve different models ({label} against {api_model}): "
            "no row compares the two paths on the same model.")
