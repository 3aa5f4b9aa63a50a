"""A local HTTP endpoint that speaks the Mistral API, so the unmodified `mistralai` SDK can talk to a self-hosted model.

Three ways to start it:

- command line: ``python -m helpers.server --model standin`` (``--help`` lists the options);
- from Python, as a context manager: ``with LocalServer(model="standin") as url: Mistral(api_key="x", server_url=url)``;
- lazily, once per process: ``ensure_server(model, embed_model, device)`` → base URL (what `helpers.client` calls).

Routes: ``POST /v1/chat/completions`` (stream, tools, tool_choice, response_format, random_seed…),
``POST /v1/embeddings``, ``GET /v1/models``, ``GET /health``. Errors use the API's own shape
(``{"object": "error", "message": …, "type": …, "code": …}``) with the API's status codes.

Concurrency: one worker thread owns the model and takes requests from a FIFO **queue**, one at a time
(requests never interleave on the model; waiting requests just queue). Embeddings run under their own lock.
Prompts are rendered by `mistral-common` (see :mod:`helpers.generation`); structure is enforced by
xgrammar (see :mod:`helpers.constrained`).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import hmac
import json
import logging
import math
import os
import queue
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .generation import ChatEngine, Generation, Prompt, PromptError, SamplingParams
from .rag import EMBED_MAX_INPUTS, EMBED_MAX_TOKENS

log = logging.getLogger("helpers.server")

# ---------------------------------------------------------------- the names the endpoint answers to
# API model names (La Plateforme aliases) served by the local chat model. One list, used everywhere.
CHAT_ALIASES: tuple[str, ...] = (
    "mistral-small-latest", "mistral-medium-latest", "mistral-large-latest",
    "mistral-tiny", "mistral-small", "mistral-medium", "mistral-large",
    "ministral-3b-latest", "ministral-8b-latest", "ministral-14b-latest",
    "open-mistral-7b", "open-mistral-nemo", "open-mixtral-8x7b", "open-mixtral-8x22b",
    "magistral-small-latest", "magistral-medium-latest", "codestral-latest", "devstral-small-latest",
    "pixtral-12b-latest",
)
EMBED_ALIASES: tuple[str, ...] = ("mistral-embed", "mistral-embed-latest", "codestral-embed")
# dated snapshots of the same families, e.g. mistral-small-2506, ministral-8b-2410
_DATED = re.compile(r"^(mistral-(small|medium|large)|ministral-\d+b|magistral-(small|medium)|"
                    r"codestral|devstral-small|open-mistral-nemo)-\d{4}$")

# mistral-embed's per-request limits (EMBED_MAX_INPUTS, EMBED_MAX_TOKENS) live in helpers.rag, which batches
# within them; the endpoint enforces the same numbers so code that works here works there.
API_KEY_ENV = "COURSE_SERVER_API_KEY"  # where the CLI reads the bearer token (kept out of `ps` and shell history)
DEFAULT_MAX_BODY = 4 * 1024 * 1024
STREAM_INTERVAL_S = 0.015  # streamed text is sent at most this often (batched in between)
DEFAULT_MAX_TOKENS = 512  # when a request gives no max_tokens (a random model never says </s> on its own)
MAX_JSON_DEPTH = 64  # a request body nested deeper than this is refused (400) before anything parses it further
MAX_SCHEMA_NODES = 5_000  # objects + arrays + values across all tool / response_format schemas of one request
DRAIN_MAX_BYTES = 64 * 1024 * 1024  # an oversized body is read and discarded up to this much, then 413 (lingering close)
DRAIN_MAX_SECONDS = 10.0


# ---------------------------------------------------------------- errors in the API's shape
class ApiError(Exception):
    """An error the endpoint answers with, in Mistral's JSON shape."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.headers = status, message, type_, code, headers or {}


def error_body(message: Any, type_: str, code: str | None = None, **extra: Any) -> dict:
    """The body La Plateforme returns on errors."""
    return {"object": "error", "message": message, "type": type_, "param": None, "code": code, **extra}


def _safe(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become strings (json.dumps would write NaN, which is not JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_safe(v) for v in value]
    return value


def safe_dumps(body: Any) -> bytes:
    """Serialise any response body: ASCII escapes (a lone surrogate becomes \\ud800, never an encode error)."""
    return json.dumps(_safe(body), ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _json_bytes(status: int, body: dict, headers: dict[str, str] | None = None) -> tuple[int, list, bytes]:
    raw = safe_dumps(body)
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    hdrs += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    return status, hdrs, raw


# ---------------------------------------------------------------- request bodies
class BodyError(ValueError):
    """A request body that must be refused before FastAPI parses it (non-finite number, bad string, too deep)."""


def _reject_constant(name: str) -> float:
    raise BodyError(f"{name} is not a JSON number: send finite numbers only")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BodyError(f"the number {text[:40]} is out of range: send finite numbers only")
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_body(raw: bytes) -> None:
    """Refuse what no route can use: non-finite numbers, lone UTF-16 surrogates, nesting past MAX_JSON_DEPTH.

    A body that is not JSON at all passes through: FastAPI answers it with its own 422.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("the request body is not valid UTF-8") from None
    # nesting depth, counted on the brackets outside strings so a 100,000-deep body never reaches a recursive parser
    depth = deepest = 0
    for ch in re.sub(r"[^\[\]{}]+", "", re.sub(r'"(?:[^"\\]|\\.)*"', "", text)):
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                raise BodyError(f"the request body is nested more than {MAX_JSON_DEPTH} levels deep "
                                f"(this server's limit is {MAX_JSON_DEPTH})")
        elif ch in "]}":
            depth -= 1
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except BodyError:
        raise
    except ValueError as exc:
        if "digits" in str(exc):  # int('9' * 5000): Python's limit on integer string conversion
            raise BodyError("a number in the request body has too many digits") from None
        return  # not JSON: FastAPI's 422 says so
    stack: list[tuple[Any, str]] = [(value, "body")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                raise BodyError(f"{where} holds a lone UTF-16 surrogate (e.g. \\ud800): send valid Unicode text")
        elif isinstance(node, dict):
            for k, v in node.items():
                if _SURROGATE.search(k):
                    raise BodyError(f"a key in {where} holds a lone UTF-16 surrogate: send valid Unicode text")
                stack.append((v, f"{where}.{k}"[:120]))
        elif isinstance(node, list):
            stack.extend((v, f"{where}[{i}]"[:120]) for i, v in enumerate(node))


def count_nodes(value: Any) -> int:
    """How many JSON values (objects, arrays, scalars) `value` holds."""
    n, stack = 0, [value]
    while stack:
        node = stack.pop()
        n += 1
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return n


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class Message(_Loose):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[Any] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    prefix: bool | None = None

    @field_validator("tool_calls")
    @classmethod
    def _check_tool_calls(cls, value: Any) -> Any:
        for call in value or []:
            fn = call.get("function")
            if not (isinstance(fn, dict) and isinstance(fn.get("name"), str)
                    and isinstance(fn.get("arguments", "{}"), (str, dict))):
                raise ValueError("each tool call needs 'function': {'name': str, 'arguments': str or object}")
        return value


class FunctionSpec(_Loose):
    name: str = Field(min_length=1, max_length=256)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ToolSpec(_Loose):
    type: Literal["function"] = "function"
    function: FunctionSpec


TOOL_CHOICES = ("auto", "none", "any", "required")


def check_tool_choice(value: Any) -> Any:
    """`auto` | `none` | `any` | `required` | {"type": "function", "function": {"name": "..."}}; else a clear error."""
    if value is None or (isinstance(value, str) and value in TOOL_CHOICES):
        return value
    if isinstance(value, dict):
        fn = value.get("function")
        if value.get("type", "function") == "function" and isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return value
    raise ValueError("tool_choice must be 'auto', 'none', 'any', 'required' or "
                     "{'type': 'function', 'function': {'name': '<one of your tools>'}}")


def check_response_format(value: Any) -> Any:
    """{"type": "text" | "json_object"} or {"type": "json_schema", "json_schema": {"schema": {...}, ...}}."""
    if value is None:
        return value
    kind = value.get("type", "text")
    if kind in ("text", "json_object"):
        return value
    if kind == "json_schema":
        js = value.get("json_schema")
        if isinstance(js, dict) and isinstance(js.get("schema", js.get("schema_")), dict):
            return value
        raise ValueError("response_format.json_schema must be an object with a 'schema' object (a JSON schema)")
    raise ValueError("response_format.type must be 'text', 'json_object' or 'json_schema'")


class ChatRequest(_Loose):
    model: str
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=0)
    min_tokens: int | None = Field(None, ge=0)
    random_seed: int | None = Field(None, ge=0, lt=2**63)
    seed: int | None = Field(None, ge=0, lt=2**63)  # the OpenAI client's name for it
    stop: str | list[str] | None = None
    stream: bool = False
    n: int | None = Field(None, ge=1)
    tools: list[ToolSpec] | None = Field(None, max_length=128)
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None

    @field_validator("tool_choice")
    @classmethod
    def _check_tool_choice(cls, value: Any) -> Any:
        return check_tool_choice(value)

    @field_validator("response_format")
    @classmethod
    def _check_response_format(cls, value: Any) -> Any:
        return check_response_format(value)


class EmbeddingRequest(_Loose):
    model: str
    inputs: str | list[str] | None = None
    input: str | list[str] | None = None  # the OpenAI client's name for it


# ---------------------------------------------------------------- the model worker (a queue, one thread)
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
            from .rag import LocalEmbedder

            try:
                self._local = LocalEmbedder(self.model_id, device=self.device)
            except Exception as exc:
                raise ApiError(503, f"embedding model {self.model_id!r} could not be loaded: {exc}",
                               "service_unavailable") from exc
        return self._local

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int, int]:
        """Vectors for `texts` (one batch), the number of tokens they hold, and the dimension."""
        from .rag import RagError

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


class RateLimiter:
    """A token bucket: at most `rps` requests per second on average, bursts of up to max(1, rps).

    `clock` (seconds, monotonic) is injectable so tests can step time instead of sleeping.
    """

    def __init__(self, rps: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not rps > 0:
            raise ValueError(f"max_rps={rps}: give a positive number of requests per second (or None for no limit)")
        self.rps, self.capacity, self.clock = rps, max(1.0, rps), clock
        self.tokens, self.stamp = self.capacity, clock()
        self._lock = threading.Lock()

    def take(self) -> tuple[bool, float, int]:
        """(allowed, seconds until the next request is allowed, requests left now)."""
        with self._lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rps)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True, 0.0, int(self.tokens)
            return False, (1 - self.tokens) / self.rps, 0


# ---------------------------------------------------------------- the ASGI gate: size, auth, rate, one log line
class Gate:
    """Outer ASGI layer: rejects oversized bodies (413), missing bearer (401), excess rate (429); logs each request."""

    OPEN_PATHS = ("/health", "/v1/health")

    def __init__(self, app: Any, *, api_key: str | None, limiter: RateLimiter | None, max_body: int) -> None:
        self.app, self.api_key, self.limiter, self.max_body = app, api_key, limiter, max_body

    async def _reply(self, send, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        status, hdrs, raw = _json_bytes(status, body, headers)
        await send({"type": "http.response.start", "status": status, "headers": hdrs})
        await send({"type": "http.response.body", "body": raw})

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        info: dict[str, Any] = {"status": 500, "tokens": None, "prompt": None}
        scope.setdefault("state", {})["log"] = info

        async def send_logged(message):
            if message["type"] == "http.response.start":
                info["status"] = message["status"]
            await send(message)

        try:
            await self._gate(scope, receive, send_logged)
        finally:
            ms = (time.perf_counter() - t0) * 1000
            tokens = info["tokens"]
            line = f"{scope['method']} {scope['path']} {info['status']} {ms:.0f}ms"
            line += f" tokens={tokens}" if tokens is not None else ""
            if info["prompt"] is not None:
                line += f" prompt={info['prompt']!r}"
            log.info(line)

    async def _gate(self, scope, receive, send) -> None:
        path = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if path not in self.OPEN_PATHS:
            if self.api_key is not None:
                auth = headers.get("authorization", "")
                given = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
                if not hmac.compare_digest(given.encode(), self.api_key.encode()):
                    return await self._reply(send, 401, error_body(
                        "Unauthorized: send 'Authorization: Bearer <key>' with the key the server was started with",
                        "unauthorized", "1001"), {"www-authenticate": 'Bearer realm="mistral-local-endpoint"'})
            if self.limiter is not None:
                ok, wait, left = self.limiter.take()
                limit_headers = {"x-ratelimit-limit-requests": f"{self.limiter.rps:g}/s",
                                 "x-ratelimit-remaining-requests": str(left)}
                if not ok:
                    return await self._reply(send, 429, error_body(
                        f"Requests rate limit exceeded ({self.limiter.rps:g} per second on this server)",
                        "rate_limited", "1300"),
                        {**limit_headers, "retry-after": str(max(1, math.ceil(wait))),
                         "retry-after-ms": str(max(1, math.ceil(wait * 1000)))})
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await self._drain(receive)
            return await self._reply(send, 413, error_body(
                f"Request body of {int(length)} bytes exceeds this server's limit of {self.max_body} bytes",
                "invalid_request_error", "request_too_large"), {"connection": "close"})
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        # read the body here, bounded (a chunked body has no length up front), check it, then hand it on
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            total += len(message.get("body", b""))
            if total > self.max_body:
                await self._drain(receive)
                return await self._reply(send, 413, error_body(
                    f"Request body exceeds this server's limit of {self.max_body} bytes",
                    "invalid_request_error", "request_too_large"), {"connection": "close"})
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        raw = b"".join(chunks)
        if raw:
            try:
                check_body(raw)
            except BodyError as exc:
                return await self._reply(send, 400, error_body(str(exc), "invalid_request_error", "3001"))
        replay = [{"type": "http.request", "body": raw, "more_body": False}]

        async def receive_replayed():
            return replay.pop() if replay else await receive()

        await self.app(scope, receive_replayed, send)

    @staticmethod
    async def _drain(receive) -> None:
        """Read and discard what the client is still sending (bounded in bytes and time), so it can read our 413.

        Answering while a client is still writing makes the close reset the connection, and the client sees a
        reset instead of the answer; this is nginx's "lingering close".
        """
        drained, deadline = 0, time.monotonic() + DRAIN_MAX_SECONDS
        while drained < DRAIN_MAX_BYTES:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                message = await asyncio.wait_for(receive(), timeout=left)
            except asyncio.TimeoutError:
                return
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return


# ---------------------------------------------------------------- the app
@dataclass
class ServedModels:
    """The model names the endpoint answers to, and what actually serves them."""

    chat_model: str
    embed_model: str
    context_length: int

    def chat_names(self) -> list[str]:
        """Names listed by /v1/models (never a file-system path)."""
        own = [public_name(self.chat_model), self.chat_model.rstrip("/").split("/")[-1]]
        return list(dict.fromkeys([*own, *CHAT_ALIASES]))

    def embed_names(self) -> list[str]:
        own = [public_name(self.embed_model), self.embed_model.rstrip("/").split("/")[-1]]
        return list(dict.fromkeys([*own, *EMBED_ALIASES]))

    def is_chat(self, name: str) -> bool:
        return name == self.chat_model or name in self.chat_names() or bool(_DATED.match(name))

    def is_embed(self, name: str) -> bool:
        return name == self.embed_model or name in self.embed_names()


class ErrorBody(BaseModel):
    """What every error response holds (La Plateforme's shape)."""

    object: Literal["error"] = "error"
    message: str
    type: str
    param: str | None = None
    code: str | None = None


_WHY = {400: "Bad request: the message says what to change (limits, roles, schema, max_tokens…)",
        401: "Missing or wrong bearer key (only when the server was started with --api-key)",
        404: "Unknown model name (GET /v1/models lists them) or unknown route",
        405: "Method not allowed (the Allow header lists the allowed ones)",
        413: "Request body larger than the server's limit (--max-body-mb)",
        422: "The body does not match the request schema (field, type or range)",
        429: "Rate limit exceeded (--max-rps); Retry-After says when to retry",
        503: "The embedding model could not be loaded"}


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": _WHY[code]} for code in codes}


def public_name(name: str) -> str:
    """A model name fit to show to any client: a local folder is named by its last part, never its full path."""
    text = str(name)
    if os.path.isabs(text) or text.startswith((".", "~")) or os.sep in text and os.path.exists(text):
        return os.path.basename(text.rstrip("/\\")) or "local-model"
    return text


def _unknown_model(name: str, kind: str, names: Iterable[str]) -> ApiError:
    sample = ", ".join(list(names)[:6])
    return ApiError(404, f"Invalid model: {name!r} is not served here for {kind} (try one of: {sample}, …; "
                         "GET /v1/models lists them all)", "invalid_model", "1500")


def create_app(engine: ChatEngine, embedder: Embedder, *, api_key: str | None = None, max_rps: float | None = None,
               max_body: int = DEFAULT_MAX_BODY, log_prompts: bool = False,
               default_max_tokens: int = DEFAULT_MAX_TOKENS) -> Any:
    """The FastAPI app (wrapped in the size/auth/rate/log gate) serving `engine` and `embedder`."""
    from fastapi import FastAPI
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    class SafeJSONResponse(JSONResponse):
        def render(self, content: Any) -> bytes:
            return safe_dumps(content)

    served = ServedModels(engine.name, embedder.model_id, engine.context_length)
    worker = ModelWorker(engine)
    app = FastAPI(title="Mistral-compatible local endpoint", version="1", docs_url="/docs", redoc_url=None,
                  default_response_class=SafeJSONResponse)
    app.state.worker = worker
    app.state.served = served

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return SafeJSONResponse(error_body(exc.message, exc.type, exc.code), status_code=exc.status,
                                headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        detail = jsonable_encoder(exc.errors(), custom_encoder={Exception: str})
        for d in detail:
            d.pop("url", None)
            d.pop("ctx", None)
            if len(repr(d.get("input"))) > 200:  # never echo a whole (possibly huge) body back
                d["input"] = repr(d["input"])[:200] + " …"
        first = detail[0] if detail else {}
        where = ".".join(str(p) for p in first.get("loc", []) if p != "body")
        message = f"{first.get('msg', 'invalid request')}" + (f" (at {where})" if where else "")
        return SafeJSONResponse(error_body(message, "invalid_request_message_error", "3001", detail=detail),
                                status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):  # 404 unknown route, 405 (with its Allow)
        return SafeJSONResponse(error_body(str(exc.detail), "invalid_request_error"), status_code=exc.status_code,
                                headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):  # a bug, not bad input: say so, keep serving
        log.exception("unhandled error")
        return SafeJSONResponse(error_body(f"internal error: {type(exc).__name__}", "internal_error"),
                                status_code=500)

    @app.get("/health", responses=_responses(429))
    @app.get("/v1/health", include_in_schema=False)
    async def health():
        # names only, never file-system paths: /health stays open even when the server requires a key
        return {"status": "ok", "model": public_name(served.chat_model),
                "embedding_model": public_name(served.embed_model), "renderer": engine.renderer,
                "queued": worker.waiting}

    @app.get("/v1/models", responses=_responses(401, 429))
    async def models():
        now = int(time.time())

        def card(name: str, chat: bool) -> dict:
            return {"id": name, "object": "model", "created": now, "owned_by": "local", "type": "base",
                    "name": name, "aliases": [],
                    "description": f"served by {public_name(served.chat_model if chat else served.embed_model)}",
                    "max_context_length": served.context_length if chat else 256,
                    "capabilities": {"completion_chat": chat, "function_calling": chat, "completion_fim": False,
                                     "fine_tuning": False, "vision": False, "classification": False}}

        return {"object": "list", "data": [card(n, True) for n in served.chat_names()] +
                [card(n, False) for n in served.embed_names()]}

    @app.post("/v1/chat/completions", responses=_responses(400, 401, 404, 413, 422, 429))
    async def chat(body: ChatRequest, request: Request):
        info = request.scope["state"]["log"]
        if not served.is_chat(body.model):
            raise _unknown_model(body.model, "chat", served.chat_names())
        if body.n not in (None, 1):
            raise ApiError(400, "the local endpoint generates one choice per request (n=1)")
        messages = [m.model_dump(exclude_none=True) for m in body.messages]
        if log_prompts:
            info["prompt"] = " | ".join(f"{m['role']}: {m.get('content')}" for m in messages)[:500]
        tools = [t.model_dump(exclude_none=True) for t in body.tools] if body.tools else None
        nodes = count_nodes([t.get("function", {}).get("parameters") for t in tools or []]) + count_nodes(
            body.response_format)
        if nodes > MAX_SCHEMA_NODES:
            raise ApiError(400, f"the tool and response_format schemas of this request hold {nodes} JSON values; "
                                f"this server's limit is {MAX_SCHEMA_NODES} (MAX_SCHEMA_NODES): send smaller schemas")
        try:
            prompt = await run_in_threadpool(engine.render, messages, tools=tools, tool_choice=body.tool_choice,
                                             response_format=body.response_format)
        except PromptError as exc:
            raise ApiError(400, str(exc), code="3230") from exc
        except (TypeError, AttributeError, KeyError, ValueError, RecursionError) as exc:  # malformed, past validation
            log.warning("request refused while rendering: %s: %s", type(exc).__name__, exc)
            raise ApiError(400, f"cannot use this request ({type(exc).__name__}): check messages, tools and "
                                "response_format against the API's schema", code="3230") from exc
        n_prompt, ctx = len(prompt.ids), served.context_length
        if n_prompt >= ctx:
            raise ApiError(400, f"Prompt contains {n_prompt} tokens, too large for model with {ctx} maximum "
                                "context length", code="3051")
        if body.max_tokens is not None and n_prompt + body.max_tokens > ctx:
            raise ApiError(400, f"Prompt contains {n_prompt} tokens and max_tokens is {body.max_tokens}: "
                                f"{n_prompt + body.max_tokens} is too large for model with {ctx} maximum context "
                                "length", code="3051")
        max_tokens = body.max_tokens if body.max_tokens is not None else min(default_max_tokens, ctx - n_prompt)
        need = await run_in_threadpool(engine.min_new_tokens, prompt)
        if need is not None and max_tokens < need:
            what = "tool call" if prompt.mode == "tools_forced" else "JSON answer"
            raise ApiError(400, f"max_tokens={max_tokens} cannot fit even the smallest complete {what} for this "
                                f"request: it needs at least {need} tokens. Set max_tokens to {need} or more.",
                           code="3051")
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        seed = body.random_seed if body.random_seed is not None else body.seed
        params = SamplingParams(max_tokens=max_tokens, temperature=0.7 if body.temperature is None else body.temperature,
                                top_p=1.0 if body.top_p is None else body.top_p,
                                min_tokens=min(body.min_tokens or 0, max_tokens), seed=seed, stop=stop)
        cid = "cmpl-" + uuid.uuid4().hex
        created = int(time.time())
        job = worker.submit(prompt, params, stream=body.stream)

        def usage(gen: Generation) -> dict:
            return {"prompt_tokens": gen.prompt_tokens, "completion_tokens": len(gen.ids),
                    "total_tokens": gen.prompt_tokens + len(gen.ids)}

        if not body.stream:
            while True:
                kind, value = await job.events.get()
                if kind == "done":
                    break
                if kind == "error":
                    raise value
            gen: Generation = value
            info["tokens"] = f"{gen.prompt_tokens}+{len(gen.ids)}"
            message = {"role": "assistant", "content": gen.content, "tool_calls": gen.tool_calls, "prefix": False}
            return {"id": cid, "object": "chat.completion", "created": created, "model": body.model,
                    "choices": [{"index": 0, "message": message, "finish_reason": gen.finish_reason}],
                    "usage": usage(gen)}

        def chunk(delta: dict, finish: str | None = None, extra: dict | None = None) -> str:
            data = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": body.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **(extra or {})}
            return f"data: {json.dumps(data)}\n\n"

        async def events():
            try:
                yield chunk({"role": "assistant", "content": ""})
                held = None
                while True:
                    kind, value = held or await job.events.get()
                    held = None
                    if kind == "text":
                        # coalesce: when the client reads slower than the model writes, send what piled up at once
                        while not job.events.empty():
                            more = job.events.get_nowait()
                            if more[0] != "text":
                                held = more
                                break
                            value += more[1]
                        yield chunk({"content": value})
                    elif kind == "error":
                        yield f"data: {json.dumps(error_body(str(value), 'internal_error'))}\n\n"
                        return
                    else:
                        gen = value
                        info["tokens"] = f"{gen.prompt_tokens}+{len(gen.ids)}"
                        delta = {"content": ""}
                        if gen.tool_calls:
                            delta = {"content": "", "tool_calls": gen.tool_calls}
                        yield chunk(delta, gen.finish_reason, {"usage": usage(gen)})
                        yield "data: [DONE]\n\n"
                        return
            finally:
                job.cancelled = True  # a client that leaves mid-stream frees the worker

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    @app.post("/v1/embeddings", responses=_responses(400, 401, 404, 413, 422, 429, 503))
    async def embeddings(body: EmbeddingRequest, request: Request):
        info = request.scope["state"]["log"]
        if not served.is_embed(body.model):
            raise _unknown_model(body.model, "embeddings", served.embed_names())
        texts = body.inputs if body.inputs is not None else body.input
        if texts is None:
            raise ApiError(400, "give the texts to embed in 'inputs' (a string or a list of strings)")
        texts = [texts] if isinstance(texts, str) else texts
        if not texts:
            raise ApiError(400, "'inputs' must not be empty")
        if len(texts) > EMBED_MAX_INPUTS:
            raise ApiError(400, f"Too many inputs in one request: {len(texts)} > {EMBED_MAX_INPUTS} "
                                "(mistral-embed's limit). Split them into batches.", code="3210")
        vectors, n_tokens, dim = await run_in_threadpool(embedder.embed, texts)
        info["tokens"] = str(n_tokens)
        return {"id": "embd-" + uuid.uuid4().hex, "object": "list", "model": body.model,
                "data": [{"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": n_tokens, "completion_tokens": 0, "total_tokens": n_tokens}}

    gated = Gate(app, api_key=api_key, limiter=RateLimiter(max_rps) if max_rps else None, max_body=max_body)
    gated.fastapi = app  # type: ignore[attr-defined]
    return gated


# ---------------------------------------------------------------- loading
def load_engine(model: str, precision: str = "auto", device: str = "auto") -> ChatEngine:
    """Load a chat model through `helpers.selfhost.load_model` and wrap it for serving; clear error if it fails."""
    from .selfhost import ModelLoadError, load_model

    try:
        loaded = load_model(model, precision, device)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load model {model!r} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "Offline, use 'standin' or a local folder; online, check the hub id, accept the model's licence "
            "and set HF_TOKEN for gated Mistral weights."
        ) from None
    return ChatEngine(loaded)


# ---------------------------------------------------------------- running it in the background
class LocalServer:
    """The endpoint on a free loopback port, in a daemon thread of this process; ready when `start()` returns.

    Use as ``with LocalServer(model="standin") as url: ...`` or call `start()` / `stop()` yourself.
    """

    def __init__(self, model: str = "standin", *, precision: str = "auto", embed_model: str | None = None,
                 device: str = "auto", host: str = "127.0.0.1", port: int = 0, api_key: str | None = None,
                 max_rps: float | None = None, log_prompts: bool = False, engine: ChatEngine | None = None,
                 max_body: int = DEFAULT_MAX_BODY, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        from .settings import DEFAULT_LOCAL_EMBED_MODEL

        self.model, self.precision, self.device = model, precision, device
        self.embed_model = embed_model or DEFAULT_LOCAL_EMBED_MODEL
        self.host, self.port, self.api_key, self.max_rps = host, port, api_key, max_rps
        self.log_prompts, self.max_body, self.default_max_tokens = log_prompts, max_body, default_max_tokens
        self.engine = engine
        self.url: str | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> str:
        """Load the model (unless given), serve it, wait until /health answers; return the base URL."""
        import uvicorn

        if self.engine is None:
            self.engine = load_engine(self.model, self.precision, self.device)
        app = create_app(self.engine, Embedder(self.embed_model, self.device), api_key=self.api_key,
                         max_rps=self.max_rps, max_body=self.max_body, log_prompts=self.log_prompts,
                         default_max_tokens=self.default_max_tokens)
        self._app = app
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"mistral-endpoint-{self.port}", daemon=True)
        self._thread.start()
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{self.port}"
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the local endpoint did not start on {self.url}")
            time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        """Stop serving and free the port (the model stays loaded in `self.engine`)."""
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._app.fastapi.state.worker.stop()
            self._server = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_servers: dict[tuple[str, str, str], LocalServer] = {}
_servers_lock = threading.Lock()


def ensure_server(model: str, embed_model: str, device: str) -> str:
    """The base URL of this process's local endpoint for these models, started (once) on first use."""
    key = (model, embed_model, device)
    with _servers_lock:
        server = _servers.get(key)
        if server is None or server._server is None:
            server = LocalServer(model=model, embed_model=embed_model, device=device)
            server.start()
            _servers[key] = server
            log.info("local endpoint for %s (+ %s) on %s at %s", model, embed_model, device, server.url)
        return server.url  # type: ignore[return-value]


@dataclass(frozen=True)
class ErrorCase:
    """One HTTP error provoked on purpose: what happened, the status, the SDK exception, what to do about it."""

    error: str
    status: int
    exception: str
    message: str
    what_to_do: str


ERROR_DEMO_RPS = 0.2  # the strict copy's rate limit: one request per 5 s, so no refill can race the demo


def error_demo(model: str = "mistral-small-latest", *, engine: ChatEngine | None = None) -> list[ErrorCase]:
    """Provoke 401, 422 and 429 against a strict copy of the local endpoint and show how the SDK reports each.

    The copy requires a key and allows one request per 5 s (ERROR_DEMO_RPS; La Plateforme answers with the
    same status codes). It serves the stand-in unless `engine` is given; every request asks for one token.
    The last row retries a rate-limited call with the SDK's RetryConfig, which waits as long as the 429's
    Retry-After says (about 5 s) and then succeeds.
    """
    from mistralai.client import Mistral
    from mistralai.client.errors import MistralError

    from .client import retry_config

    ask = [{"role": "user", "content": "ping"}]
    rows: list[ErrorCase] = []

    def provoke(name: str, what_to_do: str, call: Any) -> None:
        try:
            call()
        except MistralError as exc:
            try:
                message = json.loads(exc.body).get("message", exc.body)
            except ValueError:
                message = exc.body
            retry = exc.headers.get("retry-after")
            message = f"{message} (retry-after: {retry} s)" if retry else str(message)
            rows.append(ErrorCase(name, exc.status_code, type(exc).__name__, message[:160], what_to_do))
        else:
            raise AssertionError(f"{name}: the strict endpoint answered without an error")

    with LocalServer(model="standin", engine=engine, api_key="the-right-key", max_rps=ERROR_DEMO_RPS) as url:
        # a wrong key is refused before the rate limit is counted: the bucket still holds its one request
        provoke("bad key", "check MISTRAL_API_KEY (no quotes or spaces), or create a new key in the console",
                lambda: Mistral(api_key="a-wrong-key", server_url=url).chat.complete(
                    model=model, messages=ask, max_tokens=1))
        plain = Mistral(api_key="the-right-key", server_url=url)  # no retry_config: the SDK gives up at once
        # this request spends the bucket's one request (the server reads the body only after the rate check)
        provoke("invalid value", "read the message: it names the field and what it accepts",
                lambda: plain.chat.complete(model=model, messages=ask, max_tokens=1, temperature=5.0))
        # the bucket refills one request per 5 s, so the next request, sent at once, is over the limit
        provoke("rate limit", "batch requests, and give the client retry_config=RetryConfig('backoff', …)",
                lambda: plain.chat.complete(model=model, messages=ask, max_tokens=1))
        patient = Mistral(api_key="the-right-key", server_url=url, retry_config=retry_config(max_elapsed_ms=30_000))
        started = time.perf_counter()
        patient.chat.complete(model=model, messages=ask, max_tokens=1)
        waited = time.perf_counter() - started
        rows.append(ErrorCase("rate limit, with RetryConfig", 200, "—",
                              f"the same rate-limited request succeeded after {waited:.1f} s "
                              "(the SDK waited as Retry-After said, then retried)",
                              "nothing: this is the fix for 429"))
    return rows


@atexit.register
def _stop_all() -> None:
    for server in list(_servers.values()):
        try:
            server.stop()
        except Exception:
            pass


# ---------------------------------------------------------------- command line
def is_loopback_host(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    text = host.strip("[]").lower()
    if text == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    """`python -m helpers.server --model standin`: serve a model with the Mistral API until Ctrl-C."""
    from .selfhost import PRECISIONS
    from .settings import DEFAULT_LOCAL_EMBED_MODEL

    parser = argparse.ArgumentParser(
        prog="python -m helpers.server",
        description="Serve a local model with the Mistral chat/embeddings API, for the unmodified mistralai SDK "
                    "(Mistral(api_key=..., server_url='http://127.0.0.1:PORT')).")
    parser.add_argument("--model", required=True,
                        help="'standin' (offline random stand-in), a hub id (e.g. mistralai/Mistral-7B-Instruct-v0.3) "
                             "or a local folder")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS, help="weights precision (default: auto)")
    parser.add_argument("--embedding-model", default=DEFAULT_LOCAL_EMBED_MODEL,
                        help=f"sentence-transformers model for /v1/embeddings (default: {DEFAULT_LOCAL_EMBED_MODEL})")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 = any free port)")
    parser.add_argument("--api-key", default=None,
                        help=f"require 'Authorization: Bearer TOKEN' on every request. Prefer the environment variable "
                             f"{API_KEY_ENV}=TOKEN: a value given here shows in `ps` and in your shell history "
                             "(the flag wins when both are set)")
    parser.add_argument("--max-rps", type=float, default=None, help="rate limit in requests/s; above it: 429")
    parser.add_argument("--max-body-mb", type=float, default=DEFAULT_MAX_BODY / 2**20,
                        help="reject request bodies larger than this with 413 (default: 4)")
    parser.add_argument("--default-max-tokens", type=int, default=DEFAULT_MAX_TOKENS,
                        help=f"max_tokens when a request gives none (default: {DEFAULT_MAX_TOKENS})")
    parser.add_argument("--log-prompts", action="store_true", help="include prompt text in the request log lines")
    parser.add_argument("--insecure-public", action="store_true",
                        help="allow a non-loopback --host without --api-key (anyone who can reach the port can use "
                             "the model); without this flag the server refuses to start that way")
    args = parser.parse_args(argv)
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    if not is_loopback_host(args.host) and api_key is None and not args.insecure_public:
        print(f"error: --host {args.host} would serve the model to your network with no key. Set {API_KEY_ENV}=TOKEN "
              "(or --api-key), bind 127.0.0.1, or pass --insecure-public if you really mean it.", file=sys.stderr)
        return 2

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from .selfhost import ModelLoadError
    from .settings import SettingsError

    try:
        engine = load_engine(args.model, args.precision, args.device)
    except (ModelLoadError, SettingsError, PromptError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if getattr(engine.loaded, "is_standin", False):
        from .standin import BANNER

        print(BANNER, file=sys.stderr)
    server = LocalServer(args.model, embed_model=args.embedding_model, device=args.device, host=args.host,
                         port=args.port, api_key=api_key, max_rps=args.max_rps, log_prompts=args.log_prompts,
                         engine=engine, max_body=int(args.max_body_mb * 2**20),
                         default_max_tokens=args.default_max_tokens)
    try:
        url = server.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    # the token itself is never printed or logged: say only whether one is required
    key_hint = "<the server's key>" if api_key else "any"
    auth = "a bearer key is required" if api_key else "no key required"
    print(f"Serving {args.model} ({engine.renderer}) and {args.embedding_model} at {url} ({auth})\n"
          f"  SDK: Mistral(api_key='{key_hint}', server_url='{url}')\n"
          f"  Ctrl-C to stop.", file=sys.stderr)
    try:
        while server._thread is not None and server._thread.is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
