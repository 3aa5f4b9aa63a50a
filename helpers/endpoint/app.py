"""The FastAPI app: /v1/chat/completions, /v1/embeddings, /v1/models, /health, in the API's schema and status codes.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request
from pydantic import BaseModel

from ..rag import EMBED_MAX_INPUTS
from .batching import MAX_BATCH
from .engine import ChatEngine
from .gate import Gate, RateLimiter
from .prompts import Completion, PromptError, SamplingParams
from .rules import (
    TaggedCallFilter,
    encode_vector,
    refuse_unservable_chat,
    refuse_unservable_embedding,
    with_safe_prompt,
)
from .schemas import (
    _DATED,
    CHAT_ALIASES,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_TOKENS,
    EMBED_ALIASES,
    MAX_SCHEMA_NODES,
    ApiError,
    ChatRequest,
    EmbeddingRequest,
    count_nodes,
    error_body,
    safe_dumps,
)
from .worker import Embedder, ModelWorker

log = logging.getLogger("helpers.endpoint")


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


# When a request sends no temperature. Mistral's API reference (platform-docs-public, openapi.yaml, synced 2026-08-21):
# "The default value varies depending on the model you are targeting. Call the `/models` endpoint to retrieve the
# appropriate value" — a model card's `default_model_temperature`; the docs list no per-model numbers. So this
# endpoint does the same: it takes the served model's own default (its generation config's `temperature`, when the
# config samples at all: `do_sample=False` is greedy, 0.0), else 0.7, the top of the 0.0-0.7 range Mistral
# recommends, and reports it in /v1/models.
FALLBACK_TEMPERATURE = 0.7


def default_temperature(model: Any) -> float:
    """The temperature a request without one gets: the model's own generation default (see above)."""
    config = getattr(model, "generation_config", None)
    if config is None or getattr(config, "_from_model_config", False):  # written by transformers, not the publisher
        return FALLBACK_TEMPERATURE
    if getattr(config, "do_sample", None) is False:
        return 0.0
    temperature = getattr(config, "temperature", None)
    return float(temperature) if isinstance(temperature, (int, float)) else FALLBACK_TEMPERATURE


class ErrorBody(BaseModel):
    """What every error response holds (La Plateforme's shape)."""

    object: Literal["error"] = "error"
    message: str
    type: str
    param: str | None = None
    code: str | None = None


_WHY = {400: "Bad request: the message says what to change (limits, roles, schema, max_tokens…)",
        401: "Missing or wrong bearer key (only when the server was started with --api-key)",
        404: "Unknown route",
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
    """La Plateforme's answer to a model name it does not know: 400, type invalid_model, code 1500, a message that
    starts "Invalid model: <name>" (the body quoted in tmc/langchaingo#1233, 2025-04-23; the status as issue 30's
    probes of the API found it, 2026-12). The endpoint adds which names it serves."""
    sample = ", ".join(list(names)[:6])
    return ApiError(400, f"Invalid model: {name} (not served here for {kind}; try one of: {sample}, …; "
                         "GET /v1/models lists them all)", "invalid_model", "1500")


def refuse_unsupported(body: ChatRequest, model: str) -> None:
    """A 400 naming the field, for what the request asks and this endpoint cannot do (rather than ignoring it)."""
    if body.reasoning_effort not in (None, "none"):
        raise ApiError(400, f"reasoning_effort={body.reasoning_effort!r}: the served model "
                            f"({public_name(model)}) has no reasoning mode, so it cannot think longer; send "
                            "reasoning_effort='none' or leave it out (La Plateforme's mistral-small-latest and "
                            "mistral-medium-3-5 take 'high')", code="3001")
    if body.top_logprobs is not None and not body.logprobs:
        raise ApiError(400, "top_logprobs needs logprobs=True", code="3001")
    if body.logprobs and body.stream:
        raise ApiError(400, "logprobs with stream=True is not served by the local endpoint: ask for logprobs "
                            "without streaming", code="3001")
    if body.prompt_logprobs:
        raise ApiError(400, "prompt_logprobs is not served by the local endpoint (logprobs of generated tokens "
                            "are: logprobs=True)", code="3001")
    if body.guardrails:
        raise ApiError(400, "guardrails are La Plateforme's moderation service; the local endpoint has none, so it "
                            "refuses the request rather than answer unmoderated: leave guardrails out", code="3001")


def create_app(engine: ChatEngine, embedder: Embedder, *, api_key: str | None = None, max_rps: float | None = None,
               max_body: int = DEFAULT_MAX_BODY, log_prompts: bool = False,
               default_max_tokens: int = DEFAULT_MAX_TOKENS, max_batch: int = MAX_BATCH) -> Any:
    """The FastAPI app (wrapped in the size/auth/rate/log gate) serving `engine` and `embedder`; up to `max_batch`
    concurrent chat requests decode together (1: one at a time)."""
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
    temperature_default = default_temperature(getattr(engine, "model", None))
    worker = ModelWorker(engine, max_batch)
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
        # La Plateforme's 422: {"object": "error", "message": {"detail": [pydantic errors]}, "type":
        # "invalid_request_error", "param": null, "code": null} (as quoted in editor-code-assistant/eca#231,
        # 2025-12-12, for max_completion_tokens: type extra_forbidden, loc ["body", field], "Extra inputs are not
        # permitted"); a field on the wrong message role is at ["body", "messages", i, role, field]
        detail = jsonable_encoder(exc.errors(), custom_encoder={Exception: str})
        for d in detail:
            d.pop("url", None)
            d.pop("ctx", None)
            if len(repr(d.get("input"))) > 200:  # never echo a whole (possibly huge) body back
                d["input"] = repr(d["input"])[:200] + " …"
        return SafeJSONResponse(error_body({"detail": detail}, "invalid_request_error"), status_code=422)

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
                "queued": worker.waiting, "max_batch": worker.max_batch,
                "peak_batch": worker.scheduler.peak}

    @app.get("/v1/models", responses=_responses(401, 429))
    async def models():
        now = int(time.time())
        # an embedding card's `embedding_dimension`: this endpoint's own field (La Plateforme's ModelCard has none
        # in its OpenAPI file, 2026-08-21, nor SDK 3.7's BaseModelCard, which drops it), so code can size a vector
        # store before embedding; the description says it too, and the SDK keeps the description
        dim = getattr(embedder, "dimension", None)
        dim = await run_in_threadpool(dim) if dim else None

        def card(name: str, chat: bool) -> dict:
            served_by = public_name(served.chat_model if chat else served.embed_model)
            extra = {} if chat else {"embedding_dimension": dim}
            return {"id": name, "object": "model", "created": now, "owned_by": "local", "type": "base",
                    "name": name, "aliases": [],
                    "description": f"served by {served_by}" + ("" if chat or not dim else f": {dim}-dimensional "
                                                                "vectors"),
                    "max_context_length": served.context_length if chat else 256,
                    "default_model_temperature": temperature_default if chat else None,
                    "capabilities": {"completion_chat": chat, "function_calling": chat, "completion_fim": False,
                                     "fine_tuning": False, "vision": False, "classification": False}, **extra}

        return {"object": "list", "data": [card(n, True) for n in served.chat_names()] +
                [card(n, False) for n in served.embed_names()]}

    @app.get("/v1/models/{model_id}", responses=_responses(401, 404, 429))
    async def model_card(model_id: str):  # the SDK's client.models.retrieve(model_id=...)
        for card in (await models())["data"]:
            if card["id"] == model_id:
                return card
        raise ApiError(404, f"Model {model_id!r} not found here (GET /v1/models lists them)", "invalid_request_error")

    @app.post("/v1/chat/completions", responses=_responses(400, 401, 404, 413, 422, 429))
    async def chat(body: ChatRequest, request: Request):
        info = request.scope["state"]["log"]
        if not served.is_chat(body.model):
            raise _unknown_model(body.model, "chat", served.chat_names())
        if body.n not in (None, 1):
            raise ApiError(400, f"n={body.n}: the local endpoint generates one choice per request (La Plateforme "
                                "takes n >= 2): send n=1, or send the request n times with different random_seed")
        refuse_unsupported(body, engine.name)
        refuse_unservable_chat(body)
        messages = with_safe_prompt([m.model_dump(exclude_none=True) for m in body.messages], body.safe_prompt)
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
                                             response_format=body.response_format,
                                             parallel_tool_calls=body.parallel_tool_calls)
        except PromptError as exc:  # message order (rules.MessageOrderError), roles, content the endpoint cannot read
            raise ApiError(400, str(exc), getattr(exc, "type_", "invalid_request_error"), code="3230") from exc
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
        seed = body.random_seed
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature_default if body.temperature is None
                                else body.temperature,
                                top_p=1.0 if body.top_p is None else body.top_p,
                                min_tokens=min(body.min_tokens or 0, max_tokens), seed=seed, stop=stop,
                                logprobs=(body.top_logprobs or 0) if body.logprobs else None,
                                presence_penalty=body.presence_penalty or 0.0,
                                frequency_penalty=body.frequency_penalty or 0.0)
        cid = "cmpl-" + uuid.uuid4().hex
        created = int(time.time())
        job = worker.submit(prompt, params, stream=body.stream)

        def usage(gen: Completion) -> dict:
            # prompt_tokens_details.cached_tokens: where La Plateforme reports prompt caching (its prompt-caching
            # docs, 2026-08-21); here the prompt tokens whose KV cache was reused from an earlier request (exact
            # counts: the API counts in blocks of 64)
            return {"prompt_tokens": gen.prompt_tokens, "completion_tokens": len(gen.ids),
                    "total_tokens": gen.prompt_tokens + len(gen.ids),
                    "prompt_tokens_details": {"cached_tokens": int(gen.cached_tokens)}}

        if not body.stream:
            while True:
                kind, value = await job.events.get()
                if kind == "done":
                    break
                if kind == "error":
                    raise value
            gen: Completion = value
            info["tokens"] = f"{gen.prompt_tokens}+{len(gen.ids)}"
            message = {"role": "assistant", "content": gen.content, "tool_calls": gen.tool_calls, "prefix": False}
            choice = {"index": 0, "message": message, "finish_reason": gen.finish_reason}
            if gen.logprobs is not None:
                choice["logprobs"] = {"content": gen.logprobs}
            return {"id": cid, "object": "chat.completion", "created": created, "model": body.model,
                    "choices": [choice], "usage": usage(gen)}

        def chunk(delta: dict, finish: str | None = None, extra: dict | None = None) -> str:
            data = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": body.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **(extra or {})}
            return f"data: {json.dumps(data)}\n\n"

        # a model that writes calls as <tool_call> text: hold what may be a call, so streamed equals non-streamed
        tagged = TaggedCallFilter() if prompt.mode == "tools_auto" and engine.tool_calls_id is None else None

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
                        value = tagged.feed(value) if tagged else value
                        if value:
                            yield chunk({"content": value})
                    elif kind == "error":
                        yield f"data: {json.dumps(error_body(str(value), 'internal_error'))}\n\n"
                        return
                    else:
                        gen = value
                        info["tokens"] = f"{gen.prompt_tokens}+{len(gen.ids)}"
                        delta = {"content": tagged.finish(gen.content) if tagged else ""}
                        if gen.tool_calls:
                            delta = {**delta, "tool_calls": gen.tool_calls}
                        yield chunk(delta, gen.finish_reason, {"usage": usage(gen)})
                        yield "data: [DONE]\n\n"
                        return
            finally:
                job.cancelled = True  # a client that leaves mid-stream frees the worker

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    @app.api_route("/v1/conversations", methods=["GET", "POST"], include_in_schema=False)
    @app.api_route("/v1/conversations/{rest:path}", methods=["GET", "POST", "DELETE", "PATCH"],
                   include_in_schema=False)
    async def conversations(rest: str = ""):
        raise ApiError(404, "The Conversations API (client.beta.conversations, /v1/conversations) is La Plateforme's: "
                            "it keeps each conversation's history on Mistral's servers. This local endpoint keeps no "
                            "state between requests; send the whole message list to /v1/chat/completions instead "
                            "(notebook 02, section 4).", "invalid_request_error", "not_served_locally")

    @app.post("/v1/embeddings", responses=_responses(400, 401, 404, 413, 422, 429, 503))
    async def embeddings(body: EmbeddingRequest, request: Request):
        info = request.scope["state"]["log"]
        if not served.is_embed(body.model):
            raise _unknown_model(body.model, "embeddings", served.embed_names())
        texts = body.input
        if texts is None:
            raise ApiError(400, "give the texts to embed in 'input' (the SDK's inputs=: a string or a list of strings)")
        refuse_unservable_embedding(body, public_name(served.embed_model))
        texts = [texts] if isinstance(texts, str) else texts
        if not texts:
            raise ApiError(400, "'inputs' must not be empty")
        if len(texts) > EMBED_MAX_INPUTS:
            raise ApiError(400, f"Too many inputs in one request: {len(texts)} > {EMBED_MAX_INPUTS} "
                                "(mistral-embed's limit). Split them into batches.", code="3210")
        vectors, n_tokens, dim = await run_in_threadpool(embedder.embed, texts)
        info["tokens"] = str(n_tokens)
        return {"id": "embd-" + uuid.uuid4().hex, "object": "list", "model": body.model,
                "data": [{"object": "embedding", "embedding": encode_vector(v, body.encoding_format), "index": i}
                         for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": n_tokens, "completion_tokens": 0, "total_tokens": n_tokens}}

    gated = Gate(app, api_key=api_key, limiter=RateLimiter(max_rps) if max_rps else None, max_body=max_body)
    gated.fastapi = app  # type: ignore[attr-defined]
    return gated


# ---------------------------------------------------------------- loading
