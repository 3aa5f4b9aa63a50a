"""Run the endpoint inside this process: `LocalServer` (a context manager) and `ensure_server` (one per process).

uvicorn serves the app from a daemon thread on a free loopback port; `helpers.client` calls `ensure_server`.
"""

from __future__ import annotations

import atexit
import logging
import socket
import threading
import time
from typing import Any

from .app import create_app
from .batching import MAX_BATCH
from .engine import ChatEngine
from .schemas import DEFAULT_MAX_BODY, DEFAULT_MAX_TOKENS
from .worker import Embedder

log = logging.getLogger("helpers.endpoint")


# KV cache the endpoint reserves on a GPU (and its twin), per request it may decode at once: a typical course
# request (prompt + answer) stays under 512 tokens; with at least one 4k-token conversation's worth.
KV_TOKENS_PER_REQUEST = 512
MIN_KV_TOKENS = 4096


def load_engine(model: str, precision: str = "auto", device: str = "auto", max_batch: int = 1) -> ChatEngine:
    """Load a chat model through `helpers.selfhost.load_model` and wrap it for serving; clear error if it fails.

    On a GPU the ledger reserves the KV cache of `max_batch` concurrent requests (512 tokens each, 4,096 at least).
    """
    from ..selfhost import ModelLoadError, load_model

    kv_tokens = max(MIN_KV_TOKENS, int(max_batch) * KV_TOKENS_PER_REQUEST)
    try:
        loaded = load_model(model, precision, device, owner="the course endpoint", kv_tokens=kv_tokens)
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
                 max_body: int = DEFAULT_MAX_BODY, default_max_tokens: int = DEFAULT_MAX_TOKENS,
                 max_batch: int = MAX_BATCH, platform_tier: str | None = None) -> None:
        from ..settings import DEFAULT_LOCAL_EMBED_MODEL

        self.model, self.precision, self.device = model, precision, device
        self.embed_model = embed_model or DEFAULT_LOCAL_EMBED_MODEL
        self.host, self.port, self.api_key, self.max_rps = host, port, api_key, max_rps
        self.log_prompts, self.max_body, self.default_max_tokens = log_prompts, max_body, default_max_tokens
        self.engine, self.max_batch = engine, max_batch
        self.platform_tier = platform_tier  # answer as La Plateforme does for a key of this tier (see .platform)
        self.url: str | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> str:
        """Load the model (unless given), serve it, wait until /health answers; return the base URL."""
        import uvicorn

        if self.engine is None:
            self.engine = load_engine(self.model, self.precision, self.device, self.max_batch)
        tier = None
        if self.platform_tier:  # the tier's layer checks the key and the rate, as La Plateforme does
            from ..course.platform import tier as tier_rules

            tier = tier_rules(self.platform_tier)
        app = create_app(self.engine, Embedder(self.embed_model, self.device),
                         api_key=None if tier else self.api_key, max_rps=None if tier else self.max_rps,
                         max_body=self.max_body, log_prompts=self.log_prompts,
                         default_max_tokens=self.default_max_tokens, max_batch=self.max_batch)
        if tier is not None:
            from .platform import PlatformLayer

            app = PlatformLayer(app, tier, api_key=self.api_key)
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




@atexit.register
def _stop_all() -> None:
    for server in list(_servers.values()):
        try:
            server.stop()
        except Exception:
            pass


# ---------------------------------------------------------------- command line


def running_engine(url: str):
    """The chat engine behind the in-process server at `url` (started by `ensure_server`), e.g. to inspect its model."""
    with _servers_lock:
        for server in _servers.values():
            if server.url == url:
                return server.engine
    raise LookupError(f"no in-process course endpoint is serving at {url}")


def running_worker(url: str):
    """The model worker of the in-process server at `url`: its `max_batch` turns batching off (1) or on, e.g. to
    measure what batching buys; `scheduler.peak` is the most requests it has decoded in one step."""
    with _servers_lock:
        for server in _servers.values():
            if server.url == url and server._server is not None:
                return server._app.fastapi.state.worker
    raise LookupError(f"no in-process course endpoint is serving at {url}")
