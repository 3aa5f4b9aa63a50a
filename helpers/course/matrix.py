"""Notebook 10's decision matrix: every cell filled from this run's measurements, each with its label and source."""
from __future__ import annotations

from typing import Any

from .. import memory, serving
from .. import vllm as vllm_serve
from ..client import served_model
from ..serving import cell


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
    tools_json = "not measured here: notebook 09 builds it, deep dive 10a checks the contract"
    matrix = {
        "API (La Plateforme)": {
            "setup effort": cell("minutes: an account and a key", "literature", "the source post, collected 2026-11-25"),
            "cost per 1,000 requests": cell(f"${costs['API']:.4f} ({price.alias}, {at_1.mean_prompt_tokens:.0f}+"
                                            f"{at_1.mean_completion_tokens:.0f} tokens; not comparable: another model)",
                                            "estimated", f"prices as of {price.prices_as_of} × this run's tokens"),
            "latency p50 / p95 (1 client)": cell("not measured here (no MISTRAL_API_KEY)", "not measured", date),
            "memory on your side": cell("none: nothing runs locally", "literature", "the source post"),
            "function calling, JSON": cell("built in", "literature", "Mistral's docs, collected 2026-11-25"),
            "data leaving the machine": cell("every prompt and document", "literature", "api.mistral.ai; the source post"),
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
            "function calling, JSON": cell(tools_json, "not measured", date),
            "data leaving the machine": cell(f"none: served on {course_url}", "measured", f"loopback, {date}"),
        },
        f"vLLM + {vllm.checkpoint.hub_id.split('/')[-1]} (GPU)": {
            "setup effort": cell(f"one command: {vllm.command()}", "estimated",
                                 f"the course's vLLM recipe for the {vllm_gpu.name}, not run here, {date}"),
            "memory on your side": cell(f"{vllm_serve.gib(vllm.weights_bytes)} of weights + "
                                        f"{vllm_serve.gib(vllm.kv_budget_bytes)} of KV cache on the {vllm_gpu.name}",
                                        "estimated", f"vLLM's memory model from the config, {date}"),
            "function calling, JSON": cell("--tool-call-parser mistral; structured outputs", "literature",
                                           "vLLM docs, tool_calling.md, collected 2026-11-25"),
            "data leaving the machine": cell("none beyond your infrastructure", "literature", "the source post"),
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
    return matrix
