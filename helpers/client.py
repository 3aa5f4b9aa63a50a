"""One client, two backends: a `mistralai.client.Mistral` pointed at La Plateforme or at a local endpoint.

The notebook code that uses the client is identical on both backends; only `server_url` changes.
Retries on 429 / 5xx use the SDK's own `RetryConfig` (exponential back-off with jitter).
"""

from __future__ import annotations

from mistralai.client import Mistral
from mistralai.client.utils import BackoffStrategy, RetryConfig

from .settings import Settings, SettingsError, resolve

LOCAL_DUMMY_KEY = "local-no-key-needed"  # the course's endpoint accepts any bearer unless --api-key is set


def retry_config(
    initial_ms: int = 500, max_interval_ms: int = 20_000, exponent: float = 1.8, max_elapsed_ms: int = 90_000
) -> RetryConfig:
    """The SDK's back-off policy for rate limits and server errors (429, 500, 502, 503, 504)."""
    return RetryConfig(
        "backoff",
        BackoffStrategy(initial_ms, max_interval_ms, exponent, max_elapsed_ms),
        True,  # also retry connection errors
        ["429", "500", "502", "503", "504"],
    )


def local_url(settings: Settings) -> str:
    """URL of the local endpoint: the external one given, or the course's own, started on loopback if needed."""
    if settings.local_url:
        return settings.local_url.rstrip("/")
    try:
        from .server import ensure_server
    except ImportError as exc:  # pragma: no cover - the server ships with the course
        raise SettingsError(
            "The course's local endpoint (helpers.server) is not available in this install. "
            "Set LOCAL_URL to a Mistral-compatible server, or use BACKEND='mistral' with a key."
        ) from exc
    return ensure_server(
        model=settings.local_model,
        embed_model=settings.local_embed_model,
        device=settings.device,
    )


def get_client(settings: Settings | None = None, *, timeout_ms: int = 120_000, **params: str | None) -> Mistral:
    """The SDK client for the resolved backend (La Plateforme, or the local endpoint), with retries."""
    if settings is None:
        settings = resolve(**params)
    if settings.backend == "mistral":
        if settings.api_key is None:
            raise SettingsError("BACKEND is 'mistral' but no API key was resolved; see helpers.settings.resolve().")
        key = settings.api_key
        # a callable keeps the key out of the client's attributes and reprs
        return Mistral(api_key=key.get, retry_config=retry_config(), timeout_ms=timeout_ms)
    token = settings.local_api_key.get if settings.local_api_key else LOCAL_DUMMY_KEY
    return Mistral(
        api_key=token,
        server_url=local_url(settings),
        retry_config=retry_config(max_elapsed_ms=30_000),
        timeout_ms=timeout_ms,
    )
