"""One worker thread owns the chat model and serves requests from a FIFO queue; embeddings run under their own lock.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from typing import Any

from ..rag import EMBED_MAX_TOKENS
from .engine import ChatEngine
from .prompts import Prompt, SamplingParams
from .schemas import STREAM_INTERVAL_S, ApiError

log = logging.getLogger("helpers.server")


class _Job:
    def __init__(self, prompt: Prompt, params: SamplingParams, loop: asyncio.AbstractEventLoop, stream: bool) -> None:
        self.prompt, self.params, self.loop, self.stream = prompt, params, loop, stream
        self.events: asyncio.Queue = asyncio.Queue()
        self.cancelled = False

    def push(self, kind: str, value: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is gone (server shutting down)
            self.cancelled = True


class ModelWorker:
    """One thread owns the model; requests wait in a FIFO queue and run one at a time."""

    def __init__(self, engine: ChatEngine) -> None:
        self.engine = engine
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="model-worker", daemon=True)
        self._thread.start()

    def submit(self, prompt: Prompt, params: SamplingParams, stream: bool) -> _Job:
        job = _Job(prompt, params, asyncio.get_running_loop(), stream)
        self._queue.put(job)
        return job

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if not job.cancelled:
                self._run_job(job)

    def _run_job(self, job: _Job) -> None:
        buffer: list[str] = []
        last = time.perf_counter()

        def on_text(text: str) -> None:
            # a fast model gets its deltas batched every STREAM_INTERVAL_S, so streaming does not cost a
            # thread wake-up and an HTTP chunk per token (a 16 tok/s 7B still streams token by token)
            nonlocal last
            buffer.append(text)
            now = time.perf_counter()
            if now - last >= STREAM_INTERVAL_S:
                job.push("text", "".join(buffer))
                buffer.clear()
                last = now

        try:
            gen = self.engine.generate(job.prompt, job.params, on_text=on_text if job.stream else None,
                                       cancelled=lambda: job.cancelled)
            if buffer:
                job.push("text", "".join(buffer))
            job.push("done", gen)
        except Exception as exc:  # a model failure must not kill the worker
            log.exception("generation failed")
            job.push("error", exc)

    def stop(self) -> None:
        self._queue.put(None)


class Embedder:
    """`helpers.rag.LocalEmbedder` (loaded on first use, behind a lock) plus the endpoint's token count and limits."""

    def __init__(self, model_id: str, device: str) -> None:
        self.model_id, self.device = model_id, device
        self._local: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        if self._local is None:
            from ..rag import LocalEmbedder

            try:
                self._local = LocalEmbedder(self.model_id, device=self.device)
            except Exception as exc:
                raise ApiError(503, f"embedding model {self.model_id!r} could not be loaded: {exc}",
                               "service_unavailable") from exc
        return self._local

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int, int]:
        """Vectors for `texts` (one batch), the number of tokens they hold, and the dimension."""
        from ..rag import RagError

        with self._lock:
            local = self._get()
            tokens = sum(len(ids) for ids in local.model.tokenizer(texts, add_special_tokens=True)["input_ids"])
            if tokens > EMBED_MAX_TOKENS:
                raise ApiError(400, f"Too many tokens in this batch: {tokens} > {EMBED_MAX_TOKENS} "
                                    f"(mistral-embed's limit). Split the inputs into smaller batches.",
                               code="3210")
            try:
                vectors = local.embed(texts)
            except RagError as exc:  # e.g. an empty string, which the API rejects too
                raise ApiError(400, str(exc), code="3210") from exc
            return vectors.tolist(), tokens, int(vectors.shape[1])
