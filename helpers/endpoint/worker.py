"""One worker thread owns the chat model and decodes concurrent requests together; embeddings run under their own lock.

Requests wait in a FIFO queue; the worker admits them into a batch that shares each decoding step (continuous
batching, :mod:`helpers.endpoint.batching`: a request joins when there is room and leaves when it is done). How the
batch and the grammar interact: each request keeps its own `xgrammar` matcher and masks only its own row of the
step's logits after the shared model call, so free text, forced tool calls and JSON schemas batch together and a
grammar never sees another request's tokens. `max_batch=1` turns batching off: one request at a time, as before.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from typing import Any

from ..rag import EMBED_MAX_TOKENS
from .batching import MAX_BATCH, Scheduler
from .engine import ChatEngine
from .prompts import Completion, Prompt, SamplingParams
from .schemas import STREAM_INTERVAL_S, ApiError

log = logging.getLogger("helpers.endpoint")


class _Job:
    """One request on its way through the worker: what it asks, and the event queue its HTTP handler reads."""

    def __init__(self, prompt: Prompt, params: SamplingParams, loop: asyncio.AbstractEventLoop, stream: bool) -> None:
        self.prompt, self.params, self.loop, self.stream = prompt, params, loop, stream
        self.events: asyncio.Queue = asyncio.Queue()
        self.cancelled = False
        self._buffer: list[str] = []
        self._last = time.perf_counter()

    def push(self, kind: str, value: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is gone (server shutting down)
            self.cancelled = True

    def wants_stream(self) -> bool:
        return self.stream

    def on_text(self, text: str) -> None:
        # a fast model gets its deltas batched every STREAM_INTERVAL_S, so streaming does not cost a
        # thread wake-up and an HTTP chunk per token (a 16 tok/s 7B still streams token by token)
        self._buffer.append(text)
        now = time.perf_counter()
        if now - self._last >= STREAM_INTERVAL_S:
            self.push("text", "".join(self._buffer))
            self._buffer.clear()
            self._last = now

    def finish(self, gen: Completion) -> None:
        if self._buffer:
            self.push("text", "".join(self._buffer))
            self._buffer.clear()
        self.push("done", gen)

    def fail(self, exc: Exception) -> None:  # a model failure must not kill the worker
        self.push("error", exc)


class ModelWorker:
    """One thread owns the model; queued requests decode together, up to `max_batch` at a time."""

    def __init__(self, engine: ChatEngine, max_batch: int = MAX_BATCH) -> None:
        self.engine = engine
        self.scheduler = Scheduler(engine, max_batch)
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="model-worker", daemon=True)
        self._thread.start()

    def submit(self, prompt: Prompt, params: SamplingParams, stream: bool) -> _Job:
        job = _Job(prompt, params, asyncio.get_running_loop(), stream)
        self._queue.put(job)
        return job

    @property
    def max_batch(self) -> int:
        return self.scheduler.max_batch

    @max_batch.setter
    def max_batch(self, value: int) -> None:
        """Requests decoding together from the next step on (1: batching off, one request at a time)."""
        self.scheduler.max_batch = value

    @property
    def waiting(self) -> int:
        return self._queue.qsize() + self.scheduler.waiting

    def _run(self) -> None:
        sched = self.scheduler
        while True:
            block = not sched.busy  # wait for work only when there is nothing to decode
            while True:
                try:
                    job = self._queue.get(block=block)
                except queue.Empty:
                    break
                if job is None:
                    return
                sched.add(job)
                block = False
            try:
                sched.tick()
            except Exception:  # a scheduler bug must not kill the worker: fail what is in flight
                log.exception("scheduler failed")
                for group in (sched.shared, sched.solo):
                    for row in group.rows:
                        row.req.fail(RuntimeError("the model worker failed; see the server log"))
                    group.rows, group.pads, group.cache, group.width = [], [], None, 0

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

    def dimension(self) -> int | None:
        """The length of the vectors it returns (loads the model once); None when the model cannot be loaded."""
        try:
            with self._lock:
                model = self._get().model
        except ApiError:
            return None
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

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
