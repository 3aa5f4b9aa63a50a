"""The La Plateforme twin (`--platform-tier free`): the API's 401, 403 and 429, what the tier lists and may call,
the in-memory Conversations API, the label, and the client-side limiter that keeps a low tier under its rate."""

from __future__ import annotations

import json
import time

import httpx2 as httpx
import pytest
from mistralai.client import Mistral
from mistralai.client.errors import MistralError

from helpers import client as course_client
from helpers import endpoint as srv
from helpers import settings
from helpers.course import platform
from helpers.endpoint.gate import RateLimiter
from helpers.settings import DEFAULT_LOCAL_EMBED_MODEL

KEY = "twin-test-key"
ASK = [{"role": "user", "content": "ping"}]


@pytest.fixture(scope="module")
def twin():
    """The course endpoint as the free tier, on the stand-in engine the other server tests share."""
    url = srv.ensure_server(model="standin", embed_model=DEFAULT_LOCAL_EMBED_MODEL, device="cpu")
    server = srv.LocalServer(engine=srv.running_engine(url), api_key=KEY, platform_tier="free", device="cpu")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fast(twin):
    """The twin with its rate limit lifted, for tests about something else (restored afterwards)."""
    layer = twin._app
    before, layer.limiter = layer.limiter, RateLimiter(1000)
    yield twin.url
    layer.limiter = before


def auth(key=KEY):
    return {"authorization": f"Bearer {key}"}


def test_the_tier_file_is_dated_and_cites_a_source_for_each_rule():
    data = platform.rules()
    assert data["as_of"] == "2026-12-06"
    for status in ("401", "403", "429"):
        assert data["errors"][status]["source"] in data["sources"]
    free = data["tiers"]["free"]
    assert free["rate_source"] in data["sources"] and free["models_source"] in data["sources"]
    with pytest.raises(ValueError, match="known: free"):
        platform.tier("platinum")


def test_the_free_tier_refuses_large_and_allows_small_medium_ministral_and_embed():
    free = platform.tier("free")
    assert not free.allows("mistral-large-latest") and not free.allows("mistral-large-2512")
    for name in ("mistral-small-latest", "mistral-medium-latest", "ministral-8b-latest", "mistral-embed"):
        assert free.allows(name), name
    assert not free.allows("gpt-4o")  # a name the tier does not include is refused too
    assert free.requests_per_minute == 60


def test_no_key_or_a_wrong_key_gets_the_apis_401(fast):
    for headers in ({}, auth("wrong"), {"authorization": "Basic abc"}):
        r = httpx.post(fast + "/v1/chat/completions", headers=headers,
                       json={"model": "mistral-small-latest", "messages": ASK, "max_tokens": 1})
        assert r.status_code == 401 and r.json() == {"detail": "Unauthorized"}, (headers, r.text)
    assert httpx.get(fast + "/health").json()["platform_tier"] == "free"  # /health stays open


def test_a_model_the_tier_may_not_call_gets_403_tier_not_allowed_through_the_sdk(fast):
    client = Mistral(api_key=KEY, server_url=fast)
    with pytest.raises(MistralError) as caught:
        client.chat.complete(model="mistral-large-latest", messages=ASK, max_tokens=1)
    assert caught.value.status_code == 403
    body = json.loads(caught.value.body)
    assert body["type"] == "tier_not_allowed" and body["code"] == "1910"
    assert client.chat.complete(model="mistral-small-latest", messages=ASK, max_tokens=1).usage.completion_tokens == 1
    with pytest.raises(MistralError, match="403"):
        client.embeddings.create(model="mistral-large-latest", inputs=["x"])
    with pytest.raises(MistralError) as unknown:  # a model that does not exist is not a tier matter
        client.chat.complete(model="gpt-4o", messages=ASK, max_tokens=1)
    assert unknown.value.status_code != 403 and "tier_not_allowed" not in unknown.value.body


def test_models_lists_only_what_the_tier_may_call(fast):
    ids = [m.id for m in Mistral(api_key=KEY, server_url=fast).models.list().data]
    assert "mistral-small-latest" in ids and "mistral-embed" in ids
    assert not any(i.startswith("mistral-large") for i in ids)


def test_past_the_rate_the_api_answers_429_with_its_body_and_headers(twin):
    time.sleep(1.1)  # a full bucket
    first = httpx.get(twin.url + "/v1/models", headers=auth())
    second = httpx.get(twin.url + "/v1/models", headers=auth())
    assert first.status_code == 200 and first.headers["x-ratelimit-limit-req-minute"] == "60"
    assert second.status_code == 429, second.text
    assert second.json() == platform.error_body(429) and second.json()["type"] == "rate_limited"
    assert int(second.headers["retry-after"]) >= 1 and second.headers["x-ratelimit-remaining-req-minute"] == "0"


def test_the_client_limiter_keeps_under_the_announced_rate_and_counts_its_wait(twin):
    time.sleep(1.1)
    client = Mistral(api_key=KEY, server_url=twin.url, client=course_client.http_client())
    started = time.monotonic()
    for _ in range(3):  # without the limiter the second of these gets 429 (the SDK here has no retry_config)
        client.models.list()
    assert time.monotonic() - started >= 2.0  # three requests at one a second
    assert 1.5 <= course_client.limiter_wait_s(client) <= 3.5
    transport = client.sdk_configuration.client._transport
    assert transport.interval_s == pytest.approx(1.05)


def test_the_limiter_waits_for_nothing_where_no_rate_is_announced(fast):
    url = srv.ensure_server(model="standin", embed_model=DEFAULT_LOCAL_EMBED_MODEL, device="cpu")
    client = Mistral(api_key="any", server_url=url, client=course_client.http_client())
    for _ in range(3):
        client.models.list()
    assert course_client.limiter_wait_s(client) == 0.0


def test_conversations_start_and_append_keep_the_history_on_the_server(twin, fast):
    client = Mistral(api_key=KEY, server_url=fast)
    conv = client.beta.conversations.start(model="mistral-small-latest", inputs="My name is Ana.",
                                           instructions="Be brief.", completion_args={"max_tokens": 4})
    follow = client.beta.conversations.append(conversation_id=conv.conversation_id, inputs="What is my name?")
    assert follow.conversation_id == conv.conversation_id and follow.outputs[-1].role == "assistant"
    stored = twin._app.conversations[conv.conversation_id]["messages"]
    assert [m["role"] for m in stored] == ["system", "user", "assistant", "user", "assistant"]
    assert follow.usage.prompt_tokens > conv.usage.prompt_tokens  # the server sent the history with the question
    with pytest.raises(MistralError, match="403"):
        client.beta.conversations.start(model="mistral-large-latest", inputs="hi")
    with pytest.raises(MistralError, match="404"):
        client.beta.conversations.append(conversation_id="conv_unknown", inputs="hi")


def test_settings_point_the_api_backend_at_the_twin_and_label_it(fast, monkeypatch, clean_settings_env):
    monkeypatch.setenv("MISTRAL_API_KEY", KEY)
    monkeypatch.setenv(settings.API_URL_ENV, fast)
    cfg = settings.resolve(BACKEND="mistral")
    assert cfg.api_url == fast
    assert cfg.answered_by.startswith("La Plateforme twin (free tier)") and "not La Plateforme's" in cfg.answered_by
    assert "standin" in cfg.answered_by or "stand-in" in cfg.answered_by
    client = course_client.get_client(cfg)
    assert client.sdk_configuration.get_server_details()[0] == fast
    assert client.chat.complete(model="mistral-small-latest", messages=ASK, max_tokens=1).usage.completion_tokens == 1
    monkeypatch.setenv(settings.API_URL_ENV, "localhost:8000")
    with pytest.raises(settings.SettingsError, match="COURSE_API_URL"):
        settings.resolve(BACKEND="mistral")
    monkeypatch.delenv(settings.API_URL_ENV)
    assert settings.resolve(BACKEND="mistral").answered_by == "La Plateforme"


def test_the_cli_refuses_an_unknown_tier(capsys):
    from helpers.endpoint.cli import main

    assert main(["--model", "standin", "--platform-tier", "gold"]) == 2
    assert "known: free" in capsys.readouterr().err


def test_a_body_past_the_size_limit_still_gets_the_413_not_a_403(fast):
    big = {"model": "mistral-large-latest", "messages": [{"role": "user", "content": "x" * (5 * 2**20)}]}
    r = httpx.post(fast + "/v1/chat/completions", headers=auth(), json=big, timeout=60)
    assert r.status_code == 413, r.text[:200]
