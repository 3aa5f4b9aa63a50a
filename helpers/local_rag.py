"""Time a RAG answer stage by stage — query embedding, search, generation — for the local or the API pipeline.

The retrieval code is helpers.rag's, unchanged; only the embedder is wrapped in :class:`TimedEmbedder` so the
time spent embedding the question can be told apart from the time spent searching the index.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .rag import Embedder, Hit, VectorIndex, grounded_prompt
from .tools import content_text


class TimedEmbedder:
    """An Embedder that remembers how long its last `embed` call took (same model_id, dim and vectors)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.last_ms = 0.0

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: list[str]) -> np.ndarray:
        started = time.perf_counter()
        try:
            return self.inner.embed(texts)
        finally:
            self.last_ms = (time.perf_counter() - started) * 1000


@dataclass
class TimedAnswer:
    """One question answered through RAG, with the time each stage took."""

    question: str
    hits: list[Hit]
    answer: str
    embed_ms: float
    search_ms: float
    generate_ms: float

    @property
    def total_ms(self) -> float:
        return self.embed_ms + self.search_ms + self.generate_ms


def answer(index: VectorIndex | Any, question: str, k: int, generate: Callable[[str], str],
           prompt_for: Callable[[str, Sequence[Hit]], str] = grounded_prompt) -> TimedAnswer:
    """Retrieve the top-k chunks and answer from them with `generate(prompt) -> text`, timing each stage.

    `index`: a `rag.VectorIndex` or a `hybrid.HybridIndex` built on a TimedEmbedder (hybrid search time, BM25 and
    fusion included, counts as search). `prompt_for(question, hits)` writes the prompt: `rag.grounded_prompt` (cite
    `[c012]` in text) by default, or `citations.cited_prompt` for a JSON answer."""
    if not isinstance(index.embedder, TimedEmbedder):
        raise TypeError("Build the index with TimedEmbedder(embedder) so query embedding can be timed separately.")
    started = time.perf_counter()
    hits = index.search(question, k)
    total_search_ms = (time.perf_counter() - started) * 1000
    embed_ms = index.embedder.last_ms
    prompt = prompt_for(question, hits)
    started = time.perf_counter()
    text = generate(prompt)
    generate_ms = (time.perf_counter() - started) * 1000
    return TimedAnswer(question, hits, text, embed_ms, max(total_search_ms - embed_ms, 0.0), generate_ms)


def latency_summary(answers: Sequence[TimedAnswer]) -> dict[str, float]:
    """p50 and p95 in ms per stage: embed_ms_p50, search_ms_p50, generate_ms_p50, ..._p95 (and total)."""
    if not answers:
        raise ValueError("No answers to summarise.")
    out: dict[str, float] = {}
    for stage in ("embed_ms", "search_ms", "generate_ms", "total_ms"):
        values = np.array([getattr(a, stage) for a in answers])
        out[f"{stage}_p50"] = float(np.percentile(values, 50))
        out[f"{stage}_p95"] = float(np.percentile(values, 95))
    return out


def api_generate(client: Any, model: str, max_tokens: int) -> Callable[[str], str]:
    """A `generate(prompt)` that answers through the SDK's `chat.complete` (notebook 05's path)."""

    def run(prompt: str) -> str:
        res = client.chat.complete(model=model, messages=[{"role": "user", "content": prompt}],
                                   max_tokens=max_tokens, temperature=0)
        return content_text(res.choices[0].message)  # a str, or a list of chunks: the answer's text

    return run
