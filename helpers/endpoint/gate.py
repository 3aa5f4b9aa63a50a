"""The ASGI gate in front of the app: body size (drained, then 413), bearer key (401), rate limit (429).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from .schemas import DRAIN_MAX_BYTES, DRAIN_MAX_SECONDS, BodyError, _json_bytes, check_body, error_body

log = logging.getLogger("helpers.endpoint")



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
                        "Unauthorized: wrong or missing API key (send the key this server was started with, "
                        "as the header 'Authorization: Bearer' followed by the key)",
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
