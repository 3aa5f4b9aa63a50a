"""One client, two backends: a `mistralai.client.Mistral` pointed at La Plateforme or at a local endpoint.

The notebook code that uses the client is identical on both backends; only `server_url` changes.
Retries come in two layers, each with back-off and a total time budget:

- answers: 429 and 5xx are retried by the SDK's own `RetryConfig` (honouring Retry-After);
- the network: a reset, a connection closed without (or in the middle of) an answer, a timeout, or a refused
  connection is retried by `RetryingTransport`, inside the httpx client handed to the SDK with ``client=``.
  The SDK alone does not retry a connection closed without a response (httpx's ``RemoteProtocolError``).

A limiter in the same transport keeps to the rate the server announces (``x-ratelimit-limit-req-minute``): on a low
tier calls wait their turn instead of collecting 429s; `limiter_wait_s(client)` says how long (timed calls include it).

A server that has never answered is given only a few seconds (`connect_budget_s`): with no network,
``BACKEND='mistral'`` fails fast with :class:`ApiUnreachableError`, which says how to run offline.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx2 as httpx
from mistralai.client import Mistral
from mistralai.client.utils import BackoffStrategy, RetryConfig

from .settings import Settings, SettingsError, resolve

log = logging.getLogger(__name__)

LOCAL_DUMMY_KEY = "local-no-key-needed"  # the course's endpoint accepts any bearer unless --api-key is set
# what the network layer retries: every transient transport fault, before or after the server has answered
TRANSIENT = (httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.TimeoutException)


class ApiUnreachableError(ConnectionError):
    """The server never answered within the connect budget (no network, wrong URL, server down)."""


def retry_config(
    initial_ms: int = 500, max_interval_ms: int = 20_000, exponent: float = 1.8, max_elapsed_ms: int = 90_000
) -> RetryConfig:
    """The SDK's back-off policy for rate limits and server errors (429, 500, 502, 503, 504).

    Transport faults are left to `RetryingTransport` (see `http_client`), which has its own budget.
    """
    return RetryConfig(
        "backoff",
        BackoffStrategy(initial_ms, max_interval_ms, exponent, max_elapsed_ms),
        False,  # network faults: retried (all of them, not only some) by RetryingTransport below
        ["429", "500", "502", "503", "504"],
    )


class RetryingTransport(httpx.BaseTransport):
    """An httpx transport that retries transient network faults with exponential back-off and a total budget.

    A non-streamed answer is read here in full, so a connection cut in the middle of a body is retried too.
    Until the server has answered once, connection failures get only `connect_budget_s`, then
    `ApiUnreachableError` says what to do instead of waiting through minutes of back-off.
    """

    def __init__(self, inner: httpx.BaseTransport | None = None, *, budget_s: float = 60.0,
                 connect_budget_s: float = 4.0, initial_s: float = 0.25, max_interval_s: float = 8.0,
                 exponent: float = 2.0, offline_hint: str = "") -> None:
        self.inner = inner or httpx.HTTPTransport()
        self.budget_s, self.connect_budget_s = budget_s, connect_budget_s
        self.initial_s, self.max_interval_s, self.exponent = initial_s, max_interval_s, exponent
        self.offline_hint = offline_hint
        self.answered = False  # has the server ever answered through this transport?
        self.retries = 0  # how many attempts were repeated (for tests and curious learners)
        self.interval_s, self.next_s, self.waited_s = 0.0, 0.0, 0.0  # the limiter: gap, next free slot, time waited
        self._lock = threading.Lock()

    def _take_turn(self) -> float:
        """Wait until the next request fits the announced rate (no wait before the server has announced one)."""
        with self._lock:
            now = time.monotonic()
            slot = max(now, self.next_s)
            self.next_s, self.waited_s = slot + self.interval_s, self.waited_s + slot - now
        time.sleep(slot - now)
        return slot

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        started, attempt = time.monotonic(), 0
        while True:
            try:
                sent = self._take_turn()
                response = self.inner.handle_request(request)
                per_minute = response.headers.get("x-ratelimit-limit-req-minute", "")
                if per_minute.isdigit() and int(per_minute) > 0:  # 5% under the rate: the server's clock is not ours
                    with self._lock:
                        self.interval_s = 60 / int(per_minute) * 1.05
                        self.next_s = max(self.next_s, sent + self.interval_s)
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    try:
                        response.read()
                    except BaseException:
                        response.close()
                        raise
                self.answered = True
                return response
            except TRANSIENT as exc:
                elapsed = time.monotonic() - started
                delay = min(self.max_interval_s, self.initial_s * self.exponent ** attempt)
                delay *= 1 + random.random() * 0.25  # jitter: many clients do not retry in lockstep
                attempt += 1
                never = not self.answered and isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
                if never and elapsed + delay > self.connect_budget_s:
                    host = urlsplit(str(request.url)).netloc
                    raise ApiUnreachableError(
                        f"Cannot reach {host} ({type(exc).__name__}: {exc}) after {attempt} attempts in "
                        f"{elapsed:.1f} s: the server is unreachable from this machine. {self.offline_hint}"
                    ) from exc
                if elapsed + delay > self.budget_s:
                    raise
                log.info("retrying %s %s in %.2f s after %s", request.method, request.url.path, delay,
                         type(exc).__name__)
                self.retries += 1
                time.sleep(delay)

    def close(self) -> None:
        self.inner.close()


def http_client(*, timeout_s: float = 120.0, budget_s: float = 60.0, connect_budget_s: float = 4.0,
                initial_s: float = 0.25, offline_hint: str = "") -> httpx.Client:
    """The httpx client the course hands to `Mistral(client=...)`: network faults retried by `RetryingTransport`."""
    transport = RetryingTransport(budget_s=budget_s, connect_budget_s=connect_budget_s, initial_s=initial_s,
                                  offline_hint=offline_hint)
    return httpx.Client(transport=transport, timeout=timeout_s, follow_redirects=True)


OFFLINE_HINT = ("Check the network (or HTTPS_PROXY), or run offline with BACKEND='local' "
                "(a notebook parameter, or COURSE_BACKEND=local in the environment).")


def local_url(settings: Settings) -> str:
    """URL of the local endpoint: the external one given, or the course's own, started on loopback if needed."""
    if settings.local_url:
        return settings.local_url.rstrip("/")
    from .endpoint.local import ensure_server  # the client starts the course's own server: its one way in

    return ensure_server(
        model=settings.gpu_model,  # the model the GPU holds (the loader swaps in what computes)
        embed_model=settings.local_embed_model,
        device=settings.device,
    )


def served_model(url: str) -> Any:
    """The loaded model behind the course endpoint this process started at `url` (for its memory and label)."""
    from .endpoint.local import running_engine

    return running_engine(url).loaded


def endpoint_worker(url: str) -> Any:
    """The worker that batches requests for the course endpoint this process started at `url` (LookupError if none)."""
    from .endpoint.local import running_worker

    return running_worker(url)


def get_client(settings: Settings | None = None, *, timeout_ms: int = 120_000, **params: str | None) -> Mistral:
    """The SDK client for the resolved backend (La Plateforme, or the local endpoint), with retries."""
    if settings is None:
        settings = resolve(**params)
    if settings.backend == "mistral":
        if settings.api_key is None:
            raise SettingsError("BACKEND is 'mistral' but no API key was resolved; see helpers.settings.resolve().")
        key = settings.api_key
        # a callable keeps the key out of the client's attributes and reprs
        return Mistral(api_key=key.get, server_url=settings.api_url, retry_config=retry_config(), timeout_ms=timeout_ms,
                       client=http_client(timeout_s=timeout_ms / 1000, offline_hint=OFFLINE_HINT))
    token = settings.local_api_key.get if settings.local_api_key else LOCAL_DUMMY_KEY
    hint = ("Is the server at LOCAL_URL running? Leave LOCAL_URL empty to use the course's own endpoint."
            if settings.local_url else "The course's local endpoint stopped; restart the kernel.")
    return Mistral(
        api_key=token,
        server_url=local_url(settings),
        retry_config=retry_config(max_elapsed_ms=30_000),
        timeout_ms=timeout_ms,
        client=http_client(timeout_s=timeout_ms / 1000, budget_s=30.0, offline_hint=hint),
    )


def limiter_wait_s(client: Mistral) -> float:
    """Seconds this client's requests have waited for the server's announced rate (0.0: the limiter never held one)."""
    return getattr(getattr(client.sdk_configuration.client, "_transport", None), "waited_s", 0.0)


# ---------------------------------------------------------------- notebook 01: the errors you will meet
@dataclass(frozen=True)
class ErrorCase:
    """One HTTP error provoked on purpose: what happened, the status, the SDK exception, what to do about it."""

    error: str
    status: int
    exception: str
    message: str
    what_to_do: str


ERROR_DEMO_RPS = 0.2  # the strict copy's rate limit: one request per 5 s, so no refill can race the demo


def error_demo(model: str = "mistral-small-latest", *, engine: Any = None) -> list[ErrorCase]:
    """Provoke 401, 422 and 429 against a strict copy of the local endpoint and show how the SDK reports each.

    The copy requires a key and allows one request per 5 s (ERROR_DEMO_RPS; La Plateforme answers with the
    same status codes). It serves the stand-in unless `engine` is given; every request asks for one token.
    The last row retries a rate-limited call with the SDK's RetryConfig, which waits as long as the 429's
    Retry-After says (about 5 s) and then succeeds.
    """
    from mistralai.client import Mistral
    from mistralai.client.errors import MistralError

    from .endpoint import LocalServer

    ask = [{"role": "user", "content": "ping"}]
    rows: list[ErrorCase] = []

    def provoke(name: str, what_to_do: str, call: Any) -> None:
        try:
            call()
        except MistralError as exc:
            try:
                message = json.loads(exc.body).get("message", exc.body)
                if isinstance(message, dict):  # a 422: pydantic's errors under "detail", as La Plateforme sends them
                    message = "; ".join(f"{'.'.join(map(str, d['loc'][1:]))}: {d['msg']}" for d in message["detail"])
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
