"""Serving under load, and the decision matrix: throughput and latency at several concurrencies, cost per 1,000
requests, and matrix cells that say whether they were measured, estimated or taken from the literature.

Used by notebook 10 (serving under load and the decision matrix). The load test talks to any server through the
unmodified SDK client, so the same call measures the course endpoint, vLLM at a URL, or La Plateforme; `batching`
turns the course endpoint's continuous batching off and on, to measure what it buys.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

LABELS = ("measured", "estimated", "literature", "not measured")


@dataclass(frozen=True)
class LoadResult:
    """One load level: how many requests at what concurrency, and what came out."""

    concurrency: int
    requests: int
    seconds: float  # wall time for all requests
    requests_per_s: float
    tokens_per_s: float  # generated (completion) tokens per second, all requests together
    p50_s: float
    p95_s: float
    mean_prompt_tokens: float
    mean_completion_tokens: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def load_test(client: Any, model: str, *, concurrency: int, requests: int, max_tokens: int = 8,
              prompt: str = "Count from one to twenty in words.") -> LoadResult:
    """Send `requests` identical short chat requests, `concurrency` at a time, and time each one and the whole."""
    if concurrency < 1 or requests < concurrency:
        raise ValueError(f"need 1 <= concurrency <= requests, got concurrency={concurrency}, requests={requests}")
    messages = [{"role": "user", "content": prompt}]

    def one(_: int) -> tuple[float, int, int]:
        started = time.perf_counter()
        r = client.chat.complete(model=model, messages=messages, max_tokens=max_tokens, temperature=0.0)
        return time.perf_counter() - started, r.usage.prompt_tokens, r.usage.completion_tokens

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        done = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    latencies = np.array([d[0] for d in done])
    generated = sum(d[2] for d in done)
    return LoadResult(concurrency=concurrency, requests=requests, seconds=round(wall, 3),
                      requests_per_s=round(requests / wall, 4), tokens_per_s=round(generated / wall, 3),
                      p50_s=round(float(np.percentile(latencies, 50)), 3),
                      p95_s=round(float(np.percentile(latencies, 95)), 3),
                      mean_prompt_tokens=round(float(np.mean([d[1] for d in done])), 2),
                      mean_completion_tokens=round(generated / requests, 2))


@dataclass
class BatchingRun:
    """What `batching` set, what it replaced, and the most requests the endpoint decoded in one step meanwhile."""

    max_batch: int
    before: int
    peak: int = 0


@contextmanager
def batching(url: str, max_batch: int) -> Iterator[BatchingRun]:
    """Within the block, the course endpoint at `url` decodes up to `max_batch` concurrent requests together
    (1: batching off, one request at a time, as a server without batching would); restored afterwards.
    The `BatchingRun` it yields gets `peak` on exit: the largest batch decoded inside the block.
    Only the course's own in-process endpoint can be switched."""
    from .client import endpoint_worker

    if int(max_batch) < 1:
        raise ValueError(f"max_batch must be 1 or more, got {max_batch}")
    try:
        worker = endpoint_worker(url)
    except LookupError:
        raise ValueError(f"{url} is not the course endpoint started by this process; batching can only be "
                         "switched there (measure other servers as they are)") from None
    run = BatchingRun(int(max_batch), worker.max_batch)
    earlier, worker.scheduler.peak = worker.scheduler.peak, 0
    worker.max_batch = run.max_batch
    try:
        yield run
    finally:
        run.peak = worker.scheduler.peak
        worker.max_batch = run.before
        worker.scheduler.peak = max(earlier, run.peak)


# ---------------------------------------------------------------- cost
def api_cost_per_1000(model: str, prompt_tokens: float, completion_tokens: float) -> float:
    """USD for 1,000 requests of this size on La Plateforme, at the dated prices in data/models.csv."""
    from .catalog import cost_usd

    return 1000 * cost_usd(model, prompt_tokens=round(prompt_tokens), completion_tokens=round(completion_tokens))


def selfhost_cost_per_1000(hourly_usd: float, requests_per_s: float) -> float:
    """USD for 1,000 requests on a machine rented by the hour, kept busy at `requests_per_s`."""
    if requests_per_s <= 0:
        raise ValueError(f"requests_per_s must be positive, got {requests_per_s}")
    return hourly_usd / 3600 / requests_per_s * 1000


# ---------------------------------------------------------------- the matrix
def cell(value: Any, label: str, where: str) -> dict[str, Any]:
    """One matrix cell: its value, how we know it (measured / estimated / literature / not measured), and where
    and when (device and date, or the source and the date it was collected)."""
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, not {label!r}")
    if not where:
        raise ValueError("say where the value comes from: device and date, or source and date")
    return {"value": value, "label": label, "where": where}


def matrix_frame(matrix: dict[str, dict[str, dict[str, Any]]]):
    """The matrix for reading: rows are factors, columns backends, each cell 'value [label]' ('[literature: source]')."""
    import pandas as pd

    def shown(c: dict[str, Any]) -> str:  # a figure from the literature names its source and date
        return f"{c['value']} [{c['label']}{': ' + c['where'] if c['label'] == 'literature' else ''}]"

    factors = list(dict.fromkeys(f for b in matrix for f in matrix[b]))
    return pd.DataFrame({b: [shown(row[f]) if f in row else "—" for f in factors] for b, row in matrix.items()},
                        index=factors)


def unlabelled(matrix: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Cells without a valid label or a source: 'backend / factor' for each (the notebook asserts none)."""
    return [f"{b} / {f}" for b, row in matrix.items() for f, c in row.items()
            if c.get("label") not in LABELS or not c.get("where")]
