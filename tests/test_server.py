"""The local endpoint driven over real loopback HTTP by the unmodified `mistralai` SDK (and the `openai` client).

One server (the offline stand-in + all-MiniLM-L6-v2) is started for the whole module through
`ensure_server`, exactly as `helpers.client` starts it; a few tests start a second one on the same
loaded model for the auth / rate-limit options.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import jsonschema
import pytest
from mistralai.client import Mistral
from mistralai.client.errors import MistralError
from pydantic import BaseModel

from helpers import endpoint as srv
from helpers.client import error_demo
from helpers.settings import DEFAULT_LOCAL_EMBED_MODEL

CHAT = "mistral-small-latest"
USER = [{"role": "user", "content": "What is the status of transaction T1001?"}]

PAYMENT_TOOL = {
    "type": "function",
    "function": {
        "name": "retrieve_payment_status",
        "description": "Get the payment status of a transaction",
        "parameters": {
            "type": "object",
            "properties": {
                "transaction_id": {"type": "string", "description": "e.g. T1001"},
                "amount": {"type": "number"},
                "count": {"type": "integer", "minimum": 1},
                "currency": {"type": "string", "enum": ["EUR", "USD"]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "customer": {"type": "object", "properties": {"id": {"type": "string"}, "vip": {"type": "boolean"}},
                             "required": ["id"]},
            },
            "required": ["transaction_id", "currency"],
        },
    },
}
DATE_TOOL = {
    "type": "function",
    "function": {
        "name": "retrieve_payment_date",
        "description": "Get the payment date of a transaction",
        "parameters": {"type": "object", "properties": {"transaction_id": {"type": "string"}},
                       "required": ["transaction_id"]},
    },
}
TOOLS = [PAYMENT_TOOL, DATE_TOOL]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


@pytest.fixture(scope="module")
def url():
    return srv.ensure_server(model="standin", embed_model=DEFAULT_LOCAL_EMBED_MODEL, device="cpu")


@pytest.fixture(scope="module")
def client(url):
    return Mistral(api_key="any", server_url=url)


def ask(client, **kw):
    args = dict(model=CHAT, messages=USER, max_tokens=8, random_seed=0)
    args.update(kw)
    return client.chat.complete(**args)


def assert_valid_call(call, names=tuple(SCHEMAS)):
    assert re.fullmatch(r"[A-Za-z0-9]{9}", call.id), call.id
    assert call.function.name in names
    args = call.function.arguments
    args = json.loads(args) if isinstance(args, str) else args
    jsonschema.validate(args, SCHEMAS[call.function.name])
    return args


# ---------------------------------------------------------------- the SDK's main calls
def test_chat_complete_counts_real_tokens(client):
    from mistral_common.protocol.instruct.request import ChatCompletionRequest
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    r = ask(client, max_tokens=12, min_tokens=12)
    expected_prompt = len(MistralTokenizer.v3().encode_chat_completion(ChatCompletionRequest(messages=USER)).tokens)
    assert r.usage.prompt_tokens == expected_prompt  # rendered by mistral-common's v3 format
    assert r.usage.completion_tokens == 12 and r.usage.total_tokens == expected_prompt + 12
    assert r.choices[0].finish_reason == "length"
    assert isinstance(r.choices[0].message.content, str) and r.choices[0].message.content
    assert r.model == CHAT and r.object == "chat.completion"


def test_stream_matches_complete_and_ends_like_the_api(client):
    full = ask(client, max_tokens=10, random_seed=7, temperature=0.9).choices[0].message.content
    chunks = list(client.chat.stream(model=CHAT, messages=USER, max_tokens=10, random_seed=7, temperature=0.9))
    text = "".join(c.data.choices[0].delta.content or "" for c in chunks)
    assert text == full
    assert chunks[-1].data.choices[0].finish_reason == "length"
    assert all(c.data.choices[0].finish_reason is None for c in chunks[:-1])
    assert chunks[-1].data.usage.completion_tokens == 10


def test_random_seed_reproducible(client):
    a = ask(client, max_tokens=16, random_seed=123, temperature=1.0).choices[0].message.content
    b = ask(client, max_tokens=16, random_seed=123, temperature=1.0).choices[0].message.content
    c = ask(client, max_tokens=16, random_seed=124, temperature=1.0).choices[0].message.content
    assert a == b
    assert a != c


def test_stop_sequence_cuts_the_text(client):
    base = ask(client, max_tokens=16, random_seed=3, temperature=0).choices[0].message.content
    stop = base.split()[2]  # a word that does occur in the greedy text
    r = ask(client, max_tokens=16, random_seed=3, temperature=0, stop=[stop])
    assert r.choices[0].finish_reason == "stop"
    assert stop not in r.choices[0].message.content
    assert base.startswith(r.choices[0].message.content)


def test_embeddings_batch(client):
    texts = ["The cat sat on the mat.", "A cat was sitting on a mat.", "Quarterly revenue rose 8%."]
    r = client.embeddings.create(model="mistral-embed", inputs=texts)
    assert [d.index for d in r.data] == [0, 1, 2]
    vectors = [d.embedding for d in r.data]
    assert all(len(v) == 384 for v in vectors)

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True)) / (sum(x * x for x in a) ** 0.5 * sum(y * y for y in b) ** 0.5)

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2]) + 0.3  # a real model, real similarity
    assert r.usage.prompt_tokens > len(texts)


# ---------------------------------------------------------------- tools
@pytest.mark.parametrize("choice", ["any", "required", {"type": "function", "function": {"name": "retrieve_payment_date"}}])
def test_forced_tool_choice_returns_valid_call(client, choice):
    r = ask(client, tools=TOOLS, tool_choice=choice, max_tokens=200)
    assert r.choices[0].finish_reason == "tool_calls"
    calls = r.choices[0].message.tool_calls
    assert len(calls) == 1
    assert_valid_call(calls[0])
    if isinstance(choice, dict):
        assert calls[0].function.name == "retrieve_payment_date"


def test_tool_choice_none_and_auto(client):
    r = ask(client, tools=TOOLS, tool_choice="none", max_tokens=30, random_seed=1)
    assert not r.choices[0].message.tool_calls and r.choices[0].finish_reason in ("stop", "length")
    for seed in range(3):  # the random stand-in answers in text under auto; whatever it does, it is consistent
        r = ask(client, tools=TOOLS, tool_choice="auto", max_tokens=30, random_seed=seed)
        msg, finish = r.choices[0].message, r.choices[0].finish_reason
        assert bool(msg.tool_calls) == (finish == "tool_calls"), (seed, finish, msg)
        if msg.tool_calls:
            assert_valid_call(msg.tool_calls[0])
        else:
            assert msg.content and finish in ("stop", "length")


class _PreferToken:
    """Wraps a model so its first forward pass strongly prefers one token (as if the model chose it itself)."""

    def __init__(self, model, token_id):
        self.model, self.token_id, self.calls = model, token_id, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, **kw):
        out = self.model(**kw)
        if self.calls == 0:
            out.logits[:, -1, self.token_id] += 1000.0
        self.calls += 1
        return out


def test_auto_call_when_the_model_emits_tool_calls_is_constrained_and_parsed(url):
    from helpers import endpoint as generation

    loaded = srv.running_engine(url).loaded
    engine = generation.ChatEngine(loaded)
    assert engine.tool_calls_id is not None
    prompt = engine.render(USER, tools=TOOLS, tool_choice="auto")
    assert prompt.mode == "tools_auto"
    params = generation.SamplingParams(max_tokens=256, seed=0, temperature=1.0)
    plain = engine.generate(prompt, params)
    assert plain.tool_calls is None and plain.finish_reason != "tool_calls"  # no [TOOL_CALLS]: free text
    engine.model = _PreferToken(engine.model, engine.tool_calls_id)
    gen = engine.generate(prompt, params)
    assert engine.model.calls > 1 and gen.ids[0] == engine.tool_calls_id
    assert gen.finish_reason == "tool_calls" and gen.tool_calls
    call = gen.tool_calls[0]["function"]
    jsonschema.validate(json.loads(call["arguments"]), SCHEMAS[call["name"]])  # the grammar took over after the trigger


def test_tool_result_round_trip(client):
    r = ask(client, tools=TOOLS, tool_choice="any", max_tokens=200)
    msg = r.choices[0].message
    call = msg.tool_calls[0]
    messages = [*USER, msg, {"role": "tool", "name": call.function.name, "content": '{"status": "Paid"}',
                             "tool_call_id": call.id}]
    follow = client.chat.complete(model=CHAT, messages=messages, tools=TOOLS, tool_choice="none", max_tokens=5,
                                  random_seed=0)
    assert follow.usage.prompt_tokens > r.usage.prompt_tokens  # the call and its result are in the prompt


def test_twenty_forced_calls_all_validate(client):
    for seed in range(20):
        r = ask(client, tools=TOOLS, tool_choice="any", max_tokens=256, random_seed=seed, temperature=1.0)
        assert r.choices[0].finish_reason == "tool_calls", seed
        assert_valid_call(r.choices[0].message.tool_calls[0])


def test_streamed_tool_call(client):
    chunks = list(client.chat.stream(model=CHAT, messages=USER, tools=TOOLS, tool_choice="any", max_tokens=200,
                                     random_seed=5))
    last = chunks[-1].data.choices[0]
    assert last.finish_reason == "tool_calls"
    assert_valid_call(last.delta.tool_calls[0])


# ---------------------------------------------------------------- structured output
def test_json_object_parses(client):
    r = ask(client, response_format={"type": "json_object"}, max_tokens=200, random_seed=11)
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_json_schema_validates(client):
    schema = {"type": "object", "properties": {"id": {"type": "string"}, "paid": {"type": "boolean"},
                                               "amounts": {"type": "array", "items": {"type": "number"}}},
              "required": ["id", "paid", "amounts"], "additionalProperties": False}
    for seed in range(3):
        r = ask(client, response_format={"type": "json_schema",
                                         "json_schema": {"name": "payment", "schema": schema, "strict": True}},
                max_tokens=200, random_seed=seed)
        jsonschema.validate(json.loads(r.choices[0].message.content), schema)


def test_chat_parse_with_pydantic(client):
    class Payment(BaseModel):
        transaction_id: str
        amount: float
        paid: bool

    r = client.chat.parse(response_format=Payment, model=CHAT, messages=USER, max_tokens=200, random_seed=2)
    assert isinstance(r.choices[0].message.parsed, Payment)


# ---------------------------------------------------------------- bad input: API-shaped errors, server survives
def _status(call):
    with pytest.raises(MistralError) as info:
        call()
    return info.value.status_code, info.value.body


@pytest.mark.parametrize("kwargs, status", [
    (dict(model="gpt-4o"), 400),  # La Plateforme's answer to an unknown model: 400 invalid_model (issue 30)
    (dict(model="mistral-embed"), 400),  # an embedding model is not a chat model
    (dict(messages=[]), 422),
    (dict(max_tokens=-1), 422),
    (dict(temperature=-0.5), 422),
    (dict(messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]), 400),
    (dict(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "no_such_tool"}}), 400),
    (dict(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "foo"}}}), 400),
    (dict(tools=[{"type": "function", "function": {"name": "f", "parameters": {"$ref": "#/nope"}}}],
          tool_choice="any"), 400),
    (dict(random_seed=2**70), 422),
    (dict(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]), 400),
])
def test_bad_chat_requests(client, kwargs, status):
    got, body = _status(lambda: ask(client, **kwargs))
    assert got == status
    assert json.loads(body)["object"] == "error"
    assert ask(client).choices[0].message.content  # and the next good request still works


def test_prompt_longer_than_context(client):
    long = [{"role": "user", "content": "payment " * 9000}]
    got, body = _status(lambda: ask(client, messages=long))
    assert got == 400
    message = json.loads(body)["message"]
    assert "8192" in message and re.search(r"\d{4,} tokens", message)
    got, body = _status(lambda: ask(client, max_tokens=9000))  # prompt fits, prompt + max_tokens does not
    assert got == 400 and "9000" in json.loads(body)["message"]
    assert ask(client).usage.completion_tokens > 0


def test_bad_embedding_requests(client):
    assert _status(lambda: client.embeddings.create(model="nope-embed", inputs=["x"]))[0] == 400
    assert _status(lambda: client.embeddings.create(model="mistral-embed", inputs=["x"] * 513))[0] == 400
    assert len(client.embeddings.create(model="mistral-embed", inputs=["x"]).data) == 1


def test_malformed_and_oversized_bodies(url):
    with httpx.Client(base_url=url, timeout=30) as http:
        r = http.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["object"] == "error"
        r = http.post("/v1/chat/completions", json={"model": CHAT, "messages": "hello"})
        assert r.status_code == 422
        r = http.post("/v1/chat/completions", json={"model": CHAT, "messages": [{"role": "robot", "content": "x"}]})
        assert r.status_code == 422
        r = http.post("/v1/embeddings", content=b"x" * (5 * 1024 * 1024), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["object"] == "error"
        chunked = (b"x" * 65536 for _ in range(80))  # no content-length: counted as it arrives
        r = http.post("/v1/embeddings", content=chunked, headers={"content-type": "application/json"})
        assert r.status_code == 413
        r = http.post("/v1/chat/completions", json={"model": CHAT, "messages": USER, "max_tokens": 2})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2


# ---------------------------------------------------------------- other clients, concurrency, housekeeping
def test_openai_client_completes_a_chat(url):
    import openai
    from openai import OpenAI

    oa = OpenAI(api_key="any", base_url=url + "/v1")
    r = oa.chat.completions.create(model="open-mistral-7b", messages=USER, max_tokens=6, extra_body={"random_seed": 1})
    assert r.choices[0].message.content and r.usage.completion_tokens == 6
    with pytest.raises(openai.UnprocessableEntityError) as refused:  # as La Plateforme: no `seed` (issue 30)
        oa.chat.completions.create(model="open-mistral-7b", messages=USER, max_tokens=6, seed=1)
    assert "extra_forbidden" in json.dumps(refused.value.body)


def test_eight_concurrent_requests(client):
    def one(seed):
        return ask(client, max_tokens=12, random_seed=seed, temperature=1.0).choices[0].message.content

    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(one, range(8)))
    assert all(parallel)
    assert parallel == [one(s) for s in range(8)]  # queued, not interleaved: same seed, same text


def test_models_and_health(client, url):
    ids = [m.id for m in client.models.list().data]
    for name in ("standin", "mistral-small-latest", "mistral-large-latest", "open-mistral-7b", "mistral-embed"):
        assert name in ids
    health = httpx.get(url + "/health").json()
    assert health["status"] == "ok" and health["renderer"].startswith("mistral-common")


def test_ensure_server_reuses_the_running_server(url):
    assert srv.ensure_server(model="standin", embed_model=DEFAULT_LOCAL_EMBED_MODEL, device="cpu") == url


def test_one_log_line_per_request_without_prompt_text(client, caplog):
    with caplog.at_level(logging.INFO, logger="helpers.endpoint"):
        r = ask(client, messages=[{"role": "user", "content": "secret-word-xyz " * 7}], max_tokens=3)
        # the gate logs after the body is sent, so the line can land just after the client has its answer
        this = re.compile(rf"POST /v1/chat/completions 200 \d+ms tokens={r.usage.prompt_tokens}\+3$")
        deadline = time.monotonic() + 10
        while True:
            lines = [rec.getMessage() for rec in caplog.records if rec.name == "helpers.endpoint"]
            mine = [line for line in lines if this.match(line)]
            if mine or time.monotonic() > deadline:
                break
            time.sleep(0.02)
    assert len(mine) == 1, lines
    assert not any("secret-word-xyz" in line for line in lines)


def _server_on_same_model(url, **kw):
    engine = srv.running_engine(url)
    return srv.LocalServer(engine=engine, **kw)


def test_api_key_is_required_when_set(url):
    with _server_on_same_model(url, api_key="s3cret") as locked:
        got, _ = _status(lambda: ask(Mistral(api_key="wrong", server_url=locked)))
        assert got == 401
        assert ask(Mistral(api_key="s3cret", server_url=locked)).choices[0].message.content
        assert httpx.get(locked + "/health").status_code == 200  # health stays open for probes


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_rate_limiter_refills_at_the_given_rate():
    clock = _Clock()
    bucket = srv.RateLimiter(0.5, clock=clock)  # one request per 2 s
    assert bucket.take() == (True, 0.0, 0)
    ok, wait, left = bucket.take()
    assert not ok and wait == pytest.approx(2.0) and left == 0
    clock.now += 1.0
    ok, wait, _ = bucket.take()
    assert not ok and wait == pytest.approx(1.0)
    clock.now += 1.0
    assert bucket.take()[0]
    burst = srv.RateLimiter(3, clock=_Clock())  # bursts of up to 3, then the 4th waits a third of a second
    assert [burst.take()[0] for _ in range(4)] == [True, True, True, False]
    with pytest.raises(ValueError, match="positive"):
        srv.RateLimiter(0)


def test_rate_limit_gives_429_in_the_api_shape(url):
    # 0.2 requests/s: the bucket needs 5 s to refill, so the back-to-back requests below are over the limit
    # even on a slow machine (the SDK's retry on 429 is covered by test_error_demo_...)
    with _server_on_same_model(url, max_rps=0.2) as limited:
        with httpx.Client(base_url=limited) as http:
            codes = [http.get("/v1/models") for _ in range(3)]
            assert http.get("/health").status_code == 200  # probes are not rate limited
        assert [c.status_code for c in codes] == [200, 429, 429]
        assert codes[-1].json()["object"] == "error" and int(codes[-1].headers["retry-after"]) >= 4
        assert codes[-1].headers["x-ratelimit-remaining-requests"] == "0"
        assert _status(lambda: ask(Mistral(api_key="x", server_url=limited)))[0] == 429  # the SDK without retries


def test_error_demo_provokes_each_error_and_the_retry_fix(url):
    engine = srv.running_engine(url)
    started = time.perf_counter()
    rows = {r.error: r for r in error_demo(CHAT, engine=engine)}
    took = time.perf_counter() - started
    assert [(rows[k].status, rows[k].exception) for k in ("bad key", "rate limit", "invalid value")] == [
        (401, "SDKError"), (429, "SDKError"), (422, "HTTPValidationError")]
    assert "retry-after: 5 s" in rows["rate limit"].message and "temperature" in rows["invalid value"].message
    assert rows["rate limit, with RetryConfig"].status == 200  # the SDK waited out the 429 and succeeded
    waited = float(re.search(r"after (\d+\.\d) s", rows["rate limit, with RetryConfig"].message).group(1))
    assert 4.0 <= waited <= took < 30
    assert all(r.what_to_do for r in rows.values())


def test_cli_help_and_clear_load_error():
    out = subprocess.run([sys.executable, "-m", "helpers.endpoint", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--max-rps" in out.stdout and "--api-key" in out.stdout
    assert srv.API_KEY_ENV in " ".join(out.stdout.split())  # --help points to the env var for the token
    out = subprocess.run([sys.executable, "-m", "helpers.endpoint", "--model", "no-such-model", "--port", "0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "no-such-model" in out.stderr and "Traceback" not in out.stderr


def test_hf_chat_template_fallback_for_models_without_a_mistral_tokenizer(url, monkeypatch):
    from helpers.endpoint import ChatEngine, SamplingParams, engine

    loaded = srv.running_engine(url).loaded
    monkeypatch.setattr(engine, "find_mistral_tokenizer", lambda loaded: None)
    engine = ChatEngine(loaded)
    assert engine.renderer == "Hugging Face chat template"
    prompt = engine.render(USER)
    text = loaded.tokenizer.apply_chat_template(USER, add_generation_prompt=True, tokenize=False)
    assert prompt.ids == loaded.tokenizer.encode(text, add_special_tokens=False)
    forced = engine.render(USER, tools=TOOLS, tool_choice="any")
    gen = engine.generate(forced, SamplingParams(max_tokens=256, seed=0))
    assert gen.finish_reason == "tool_calls"
    jsonschema.validate(json.loads(gen.tool_calls[0]["function"]["arguments"]),
                        SCHEMAS[gen.tool_calls[0]["function"]["name"]])


def test_cli_reads_the_key_from_the_environment_and_never_prints_it(tmp_path):
    secret = "s3cret-token-from-env-1234"
    env = {**os.environ, srv.API_KEY_ENV: secret, "PYTHONUNBUFFERED": "1"}
    err = tmp_path / "stderr.txt"
    with err.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "helpers.endpoint", "--model", "standin", "--port", "0"],
                                stdout=sink, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 120
            while "Serving" not in err.read_text() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            started = err.read_text()
            found = re.search(r"at (http://127\.0\.0\.1:\d+)", started)
            assert found, started
            base = found.group(1)
            assert _status(lambda: ask(Mistral(api_key="wrong", server_url=base)))[0] == 401
            assert ask(Mistral(api_key=secret, server_url=base)).choices[0].message.content
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    output = err.read_text()
    assert "a bearer key is required" in output
    assert secret not in output  # neither the banner nor the request log shows the token


def test_embeddings_reject_an_empty_text_in_the_api_shape(client):
    got, body = _status(lambda: client.embeddings.create(model="mistral-embed", inputs=["fine", "  "]))
    assert got == 400 and "empty" in json.loads(body)["message"]


def test_api_embedder_names_the_local_model_not_the_port(url, client, tmp_path, clean_settings_env):
    from helpers import embeddings, rag, settings

    emb = rag.ApiEmbedder.for_settings(client, settings.resolve(BACKEND="local"), cache=tmp_path / "c.sqlite",
                                       progress=False)
    assert emb.model_id == f"mistral-embed@{DEFAULT_LOCAL_EMBED_MODEL}"  # the same key every session
    assert url.rsplit(":", 1)[-1] not in emb.model_id
    assert embeddings.served_by_for_url("http://127.0.0.1:9/") == "http://127.0.0.1:9"  # a bare URL: named as given
