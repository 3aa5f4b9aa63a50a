"""`--platform-tier free`: the course endpoint answering as La Plateforme does for a key of that tier.

An ASGI layer in front of the gated app (`PlatformLayer`) applies the tier's rules from `helpers.course.platform`
(dated data with sources): a bearer key is required (401 with the API's body), a model the tier does not include
is refused (403 ``tier_not_allowed``), requests past the tier's rate get 429 with the API's body, ``Retry-After``
and the ``x-ratelimit-*`` headers La Plateforme sends (on every answer, as it does). ``/v1/models`` lists what the
tier may call, ``/health`` names the tier, and a small in-memory Conversations API (start and append, over
``/v1/chat/completions``) stands in for ``client.beta.conversations``. The answers stay the offline model's.
"""

from __future__ import annotations

import collections
import hmac
import json
import math
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from ..course.platform import Tier, error_body
from .gate import RateLimiter
from .schemas import DEFAULT_MAX_BODY, _json_bytes
from .schemas import error_body as api_error_body

OPEN_PATHS = ("/health", "/v1/health")
MAX_CONVERSATIONS = 1000  # the oldest is forgotten past this many (the store lives in this process's memory)


class PlatformLayer:
    """ASGI layer: the tier's key, rate and model rules, `/v1/models` filtered, and start/append conversations."""

    def __init__(self, app: Any, tier: Tier, *, api_key: str | None, clock=time.monotonic) -> None:
        self.app, self.tier, self.api_key = app, tier, api_key
        self.limiter = RateLimiter(tier.requests_per_second, clock=clock)
        self.clock = clock
        self._minute: collections.deque[float] = collections.deque()  # request times in the last minute
        self._lock = threading.Lock()
        self.conversations: collections.OrderedDict[str, dict] = collections.OrderedDict()
        self.refused = collections.Counter()  # status -> how many (for tests and the curious)

    def __getattr__(self, name: str) -> Any:  # `fastapi` and the rest: the wrapped app's
        return getattr(self.app, name)

    # ------------------------------------------------------------ helpers
    def _rate_headers(self) -> dict[str, str]:
        with self._lock:
            now = self.clock()
            while self._minute and now - self._minute[0] >= 60:
                self._minute.popleft()
            left = max(0, self.tier.requests_per_minute - len(self._minute))
        return {"x-ratelimit-limit-req-minute": str(self.tier.requests_per_minute),
                "x-ratelimit-remaining-req-minute": str(left),
                "x-ratelimit-limit-tokens-minute": str(self.tier.tokens_per_minute)}

    async def _reply(self, send, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        if status >= 400:
            self.refused[status] += 1
        status, hdrs, raw = _json_bytes(status, body, headers)
        await send({"type": "http.response.start", "status": status, "headers": hdrs})
        await send({"type": "http.response.body", "body": raw})

    async def _inner(self, scope, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        """Call the wrapped app in-process (for conversations); (status, body)."""
        sub = {**scope, "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
               "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
               "state": {}}
        sent = [{"type": "http.request", "body": body, "more_body": False}]
        out: dict[str, Any] = {"status": 500, "body": b""}

        async def receive():
            return sent.pop() if sent else {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                out["status"] = message["status"]
            elif message["type"] == "http.response.body":
                out["body"] += message.get("body", b"")

        await self.app(sub, receive, send)
        return out["status"], out["body"]

    # ------------------------------------------------------------ the layer
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path in OPEN_PATHS:
            return await self._health(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        auth = headers.get("authorization", "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not given or (self.api_key is not None and not hmac.compare_digest(given.encode(), self.api_key.encode())):
            return await self._reply(send, 401, error_body(401))
        ok, wait, _ = self.limiter.take()
        if not ok:
            return await self._reply(send, 429, error_body(429), {
                **self._rate_headers(), "x-ratelimit-remaining-req-minute": "0",
                "retry-after": str(max(1, math.ceil(wait)))})
        with self._lock:
            self._minute.append(self.clock())
        rate = self._rate_headers()

        async def send_with_rate(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                   *((k.encode(), v.encode()) for k, v in rate.items())]}
            await send(message)

        body, read, whole = b"", [], True
        if scope["method"] == "POST":  # read the body (up to the size the app accepts) for the model it names
            while sum(len(m.get("body", b"")) for m in read) <= DEFAULT_MAX_BODY:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                read.append(message)
                if not message.get("more_body", False):
                    break
            else:
                whole = False  # too large: the wrapped app answers 413
            body = b"".join(m.get("body", b"") for m in read)
            try:
                model = json.loads(body).get("model") if whole and body else None
            except (ValueError, AttributeError):
                model = None  # the wrapped app says what is wrong with the body
            served = self.app.fastapi.state.served  # a name no model answers to gets the app's own refusal, as on the API
            known = isinstance(model, str) and (served.is_chat(model) or served.is_embed(model))
            if known and not self.tier.allows(model):
                return await self._reply(send_with_rate, 403, error_body(403))
        if path == "/v1/models" and scope["method"] == "GET":
            return await self._models(scope, send_with_rate)
        if path == "/v1/conversations" or path.startswith("/v1/conversations/"):
            return await self._conversation(scope, path, body, send_with_rate)
        async def receive_replayed():
            return read.pop(0) if read else await receive()

        await self.app(scope, receive_replayed, send_with_rate)

    async def _health(self, scope, receive, send) -> None:
        status, raw = await self._inner(scope, "GET", scope["path"], b"")
        health = json.loads(raw) if status == 200 else {}
        health.update(platform_tier=self.tier.name, platform_rules_as_of=self.tier.as_of)
        await self._reply(send, status, health)

    async def _models(self, scope, send) -> None:
        status, raw = await self._inner(scope, "GET", "/v1/models", b"")
        listing = json.loads(raw)
        if status == 200:
            listing["data"] = [card for card in listing["data"] if self.tier.allows(card["id"])]
        await self._reply(send, status, listing)

    # ------------------------------------------------------------ conversations: start and append, in memory
    async def _conversation(self, scope, path: str, body: bytes, send) -> None:
        parts = path.strip("/").split("/")  # v1, conversations[, id]
        if scope["method"] != "POST" or len(parts) > 3:
            return await self._reply(send, 404, api_error_body(
                "This stand-in for La Plateforme serves client.beta.conversations.start and .append only "
                "(POST /v1/conversations, POST /v1/conversations/{id}); history, restart and listing are "
                "La Plateforme's", "invalid_request_error", "not_served_locally"))
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return await self._reply(send, 400, api_error_body("the body is not JSON", "invalid_request_error", "3001"))
        if request.get("stream"):
            return await self._reply(send, 400, api_error_body(
                "streamed conversations are La Plateforme's; this stand-in answers stream=false only",
                "invalid_request_error", "3001"))
        if len(parts) == 2:  # start
            if not request.get("model"):
                return await self._reply(send, 400, api_error_body(
                    "give the model (agents are La Plateforme's)", "invalid_request_error", "3001"))
            history = [{"role": "system", "content": request["instructions"]}] if request.get("instructions") else []
            state = {"model": request["model"], "messages": history, "args": request.get("completion_args") or {}}
            conversation_id = "conv_" + uuid.uuid4().hex
        else:
            conversation_id = parts[2]
            state = self.conversations.get(conversation_id)
            if state is None:
                return await self._reply(send, 404, api_error_body(
                    f"conversation {conversation_id!r} not found (this stand-in keeps conversations in memory "
                    "until the endpoint stops)", "invalid_request_error", "not_found"))
        inputs = request.get("inputs")
        new = [{"role": "user", "content": inputs}] if isinstance(inputs, str) else [
            {"role": e.get("role", "user"), "content": e.get("content")} for e in inputs or []]
        args = {**state["args"], **(request.get("completion_args") or {})}
        chat = {"model": state["model"], "messages": state["messages"] + new,
                **{k: v for k, v in args.items() if v is not None}}
        status, raw = await self._inner(scope, "POST", "/v1/chat/completions", json.dumps(chat).encode())
        answer = json.loads(raw)
        if status != 200:
            return await self._reply(send, status, answer)
        text = answer["choices"][0]["message"].get("content") or ""
        state["messages"] = chat["messages"] + [{"role": "assistant", "content": text}]
        with self._lock:
            self.conversations[conversation_id] = state
            while len(self.conversations) > MAX_CONVERSATIONS:
                self.conversations.popitem(last=False)
        now = datetime.now(timezone.utc).isoformat()
        usage = answer["usage"]
        await self._reply(send, 200, {
            "object": "conversation.response", "conversation_id": conversation_id,
            "outputs": [{"object": "entry", "type": "message.output", "created_at": now, "completed_at": now,
                         "model": state["model"], "id": "msg_" + uuid.uuid4().hex, "role": "assistant",
                         "content": text}],
            "usage": {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
                      "total_tokens": usage["total_tokens"]}})
