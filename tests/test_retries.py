"""Retries survive every transient fault, injected by a loopback proxy between the SDK and the endpoint.

429/503 are retried by the SDK's RetryConfig; resets, closes without an answer (httpx RemoteProtocolError),
cut answers and timeouts by `helpers.client.RetryingTransport`, before and after the server has answered.
With no network, the mistral backend fails within seconds and says how to run offline.
"""

from __future__ import annotations

import socket
import time

import pytest
from faultproxy import FaultProxy
from mistralai.client import Mistral

from helpers import client as course_client
from helpers import endpoint as srv
from helpers import settings
from helpers.settings import DEFAULT_LOCAL_EMBED_MODEL

ASK = [{"role": "user", "content": "ping"}]


@pytest.fixture(scope="module")
def upstream_port():
    url = srv.ensure_server(model="standin", embed_model=DEFAULT_LOCAL_EMBED_MODEL, device="cpu")
    return int(url.rsplit(":", 1)[1])


def fast_client(url: str, timeout_s: float = 1.5) -> Mistral:
    """The course's client stack with short back-off, so the whole test stays within seconds."""
    http = course_client.http_client(timeout_s=timeout_s, budget_s=20, initial_s=0.02)
    return Mistral(api_key="x", server_url=url, client=http, timeout_ms=int(timeout_s * 1000),
                   retry_config=course_client.retry_config(initial_ms=20, max_interval_ms=100, max_elapsed_ms=20_000))


@pytest.mark.parametrize("fault", ["429", "503", "reset", "close", "stall", "reset_after", "close_after", "cut_after"])
def test_every_fault_is_retried_until_the_answer_arrives(upstream_port, fault):
    proxy = FaultProxy(upstream_port, [fault, fault], stall_s=3)
    with proxy as url:
        answer = fast_client(url).chat.complete(model="mistral-small-latest", messages=ASK, max_tokens=2,
                                                random_seed=0)
    assert answer.choices[0].message.content is not None
    assert proxy.log[:3] == [fault, fault, "ok"]  # two faults, then the retry that got through


def test_a_stream_and_embeddings_are_retried_too(upstream_port):
    proxy = FaultProxy(upstream_port, ["close", "reset_after", "503", "close_after"])
    with proxy as url:
        c = fast_client(url, timeout_s=30)
        chunks = list(c.chat.stream(model="mistral-small-latest", messages=ASK, max_tokens=2, random_seed=0))
        vectors = c.embeddings.create(model="mistral-embed", inputs=["a", "b"])
    assert chunks and chunks[-1].data.choices[0].finish_reason is not None
    assert len(vectors.data) == 2
    assert proxy.log[:6] == ["close", "reset_after", "503", "close_after", "ok", "ok"]  # 4 faults, then both go through


def test_retries_stop_at_the_budget():
    with socket.socket() as s:  # a port where nothing listens: refused at once, every time
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    http = course_client.http_client(timeout_s=1, connect_budget_s=0.5, initial_s=0.05)
    started = time.monotonic()
    with pytest.raises(course_client.ApiUnreachableError, match=f"127.0.0.1:{port}"):
        Mistral(api_key="x", server_url=f"http://127.0.0.1:{port}", client=http).models.list()
    assert time.monotonic() - started < 3
    assert http._transport.retries >= 2  # it did retry before giving up


def test_mistral_backend_without_network_fails_fast_and_says_how_to_go_offline(monkeypatch, clean_settings_env):
    real = socket.getaddrinfo

    def no_dns(host, *args, **kwargs):  # this machine has no network: every name lookup fails, as offline
        if host in ("127.0.0.1", "localhost", "::1"):
            return real(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setenv("MISTRAL_API_KEY", "fake-key-for-tests-0123456789")
    api = course_client.get_client(settings.resolve(BACKEND="mistral"))
    started = time.monotonic()
    with pytest.raises(course_client.ApiUnreachableError) as info:
        api.chat.complete(model="mistral-small-latest", messages=ASK, max_tokens=1)
    assert time.monotonic() - started < 10  # seconds, not the minutes of a full back-off
    message = str(info.value)
    assert "api.mistral.ai" in message and "unreachable" in message and "BACKEND='local'" in message


def test_the_sdk_alone_gives_up_on_a_close_without_answer(upstream_port):
    """Why RetryingTransport exists: the SDK's own retry treats RemoteProtocolError as permanent."""
    import httpx2
    from mistralai.client.utils import BackoffStrategy, RetryConfig

    proxy = FaultProxy(upstream_port, ["close"])
    with proxy as url:
        plain = Mistral(api_key="x", server_url=url,
                        retry_config=RetryConfig("backoff", BackoffStrategy(20, 100, 2, 5_000), True))
        with pytest.raises(httpx2.RemoteProtocolError):
            plain.chat.complete(model="mistral-small-latest", messages=ASK, max_tokens=1)
    assert proxy.log == ["close"]


def test_a_rerun_after_faults_pays_no_embedding_requests(upstream_port, tmp_path, clean_settings_env):
    from helpers import rag

    cfg = settings.resolve(BACKEND="local")
    texts = [f"payment T{1000 + i} was settled on day {i}" for i in range(30)] + ["payment T1000 was settled on day 0"]
    faults = ["503", "close", "reset_after", "cut_after", "429", "close_after"]
    with FaultProxy(upstream_port, faults) as url:
        first = rag.ApiEmbedder.for_settings(fast_client(url, timeout_s=30), cfg, cache=tmp_path / "c.sqlite",
                                             max_inputs=7, progress=False)
        vectors = first.embed(texts)
    assert first.requests == 5 and first.inputs_sent == 30  # 30 distinct texts in batches of 7; the repeat is free
    with FaultProxy(upstream_port, ["close", "reset"]) as other_port:  # a rerun, the endpoint on another port
        rerun = rag.ApiEmbedder.for_settings(fast_client(other_port), cfg, cache=tmp_path / "c.sqlite",
                                             max_inputs=7, progress=False)
        again = rerun.embed(texts)
    assert rerun.requests == 0 and rerun.cache_hits == len(texts)
    assert (again == vectors).all()
