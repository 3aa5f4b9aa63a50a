"""The endpoint's edge: no request body gives a 5xx, every error is JSON, limits are named, exposure is small.

Raw bodies are sent with httpx (the SDK would refuse to build most of them). A second server shares the
stand-in already loaded by `ensure_server`, with a tiny default max_tokens so fuzzed requests stay fast.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import endpoint as srv
from helpers.settings import DEFAULT_LOCAL_EMBED_MODEL

CHAT = "mistral-small-latest"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def engine():
    url = srv.ensure_server(model="standin", embed_model=DEFAULT_LOCAL_EMBED_MODEL, device="cpu")
    return srv.running_engine(url)


@pytest.fixture(scope="module")
def base(engine):
    with srv.LocalServer(engine=engine, default_max_tokens=4, max_body=256 * 1024) as url:
        yield url


@pytest.fixture(scope="module")
def http(base):
    with httpx.Client(base_url=base, timeout=60) as client:
        yield client


def post_raw(http, path: str, text: str) -> httpx.Response:
    return http.post(path, content=text.encode("utf-8", "surrogatepass"), headers={"content-type": "application/json"})


def assert_clean_error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    body = json.loads(r.content)  # strict JSON: no NaN, no invalid UTF-8
    assert body["object"] == "error"
    # La Plateforme's shapes: a sentence, or for a 422 the pydantic errors under message.detail
    assert isinstance(body["message"], str) or status == 422 and isinstance(body["message"]["detail"], list)
    return body


def still_answers(http) -> None:
    r = http.post("/v1/chat/completions", json={"model": CHAT, "messages": HI, "max_tokens": 2, "random_seed": 0})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] is not None


CHAT_HEAD = '{"model": "mistral-small-latest", "max_tokens": 2, '


@pytest.mark.parametrize("raw, status, words", [
    (CHAT_HEAD + '"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', 400, "NaN"),
    (CHAT_HEAD + '"messages": [{"role": "user", "content": "hi"}], "top_p": Infinity}', 400, "Infinity"),
    (CHAT_HEAD + '"messages": [{"role": "user", "content": "hi"}], "temperature": 1e400}', 400, "finite"),
    (CHAT_HEAD + '"messages": [{"role": "user", "content": "hi"}], "x": -Infinity}', 400, "Infinity"),
    (CHAT_HEAD + '"messages": [{"role": "user", "content": "a\\ud800b"}]}', 400, "surrogate"),
    (CHAT_HEAD + '"stream": true, "messages": [{"role": "user", "content": "\\udfff"}]}', 400, "surrogate"),
    ('{"model": "\\ud800", "messages": [{"role": "user", "content": "hi"}]}', 400, "surrogate"),
    (CHAT_HEAD + '"messages": [{"role": "user", "content": "hi"}], "max_tokens": ' + "9" * 5000 + "}", 400,
     "digits"),
    (CHAT_HEAD + '"messages": ' + "[" * 300 + "]" * 300 + "}", 400, "64"),
    (CHAT_HEAD + '"messages": [{"role": "user", "content": "hi"}], "tool_choice": {"function": 5}}', 422,
     "tool_choice"),
    (CHAT_HEAD + '"messages": [{"role": "user", "content": "hi"}], '
                 '"tool_choice": {"type": "function", "function": "f"}}', 422, "tool_choice"),
    (CHAT_HEAD + '"messages": [{"role": "user", "content": "hi"}], "response_format": '
                 '{"type": "json_schema", "json_schema": 5}}', 422, "json_schema"),
    (CHAT_HEAD + '"messages": [{"role": "assistant", "content": "x", "tool_calls": [{"function": "f"}]},'
                 '{"role": "user", "content": "hi"}]}', 422, "tool_calls"),
    (CHAT_HEAD + '"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": '
                 '{"name": "f", "parameters": {"type": "object", "properties": 5}}}], "tool_choice": "any"}', 400,
     "schema"),
    ('{"model": "mistral-embed", "inputs": ["ok", "\\ud800"]}', 400, "surrogate"),
])
def test_bad_bodies_get_a_4xx_that_says_what_is_wrong(http, raw, status, words):
    path = "/v1/embeddings" if '"mistral-embed"' in raw else "/v1/chat/completions"
    body = assert_clean_error(post_raw(http, path, raw), status)
    assert words.lower() in json.dumps(body).lower()
    still_answers(http)


def test_a_deep_tool_schema_names_the_limit_and_a_finite_12_level_one_is_not_called_recursive(http):
    def nested(levels: int) -> dict:
        node: dict = {"type": "string"}
        for _ in range(levels):
            node = {"type": "object", "properties": {"x": node}, "required": ["x"]}
        return node

    deep = {"model": CHAT, "messages": HI, "tool_choice": "any",
            "tools": [{"type": "function", "function": {"name": "f", "parameters": nested(200)}}]}
    message = assert_clean_error(http.post("/v1/chat/completions", json=deep), 400)["message"]
    assert "64" in message and "limit" in message
    finite = {"model": CHAT, "messages": HI, "max_tokens": 200, "random_seed": 0,
              "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": nested(12)}}}
    r = http.post("/v1/chat/completions", json=finite)
    assert "recurs" not in r.text
    assert r.status_code == 200, r.text
    value = json.loads(r.json()["choices"][0]["message"]["content"])
    for _ in range(12):
        value = value["x"]
    assert isinstance(value, str)


def test_tiny_temperature_samples_greedily_instead_of_failing(http):
    r = http.post("/v1/chat/completions", json={"model": CHAT, "messages": HI, "max_tokens": 3, "temperature": 1e-45,
                                                "random_seed": 1})
    assert r.status_code == 200
    greedy = http.post("/v1/chat/completions", json={"model": CHAT, "messages": HI, "max_tokens": 3,
                                                     "temperature": 0})
    assert r.json()["choices"][0]["message"]["content"] == greedy.json()["choices"][0]["message"]["content"]


def test_405_carries_allow_and_404_is_json(http):
    r = http.get("/v1/chat/completions")
    assert_clean_error(r, 405)
    assert r.headers["allow"] == "POST"
    assert_clean_error(http.get("/v1/nothing-here"), 404)


def test_openapi_documents_the_real_error_responses(http):
    spec = http.get("/openapi.json").json()
    chat = spec["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert {"200", "400", "401", "404", "413", "422", "429"} <= set(chat)
    assert chat["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert {"400", "404", "413", "422", "503"} <= set(spec["paths"]["/v1/embeddings"]["post"]["responses"])


def test_oversized_body_gets_a_readable_413_not_a_reset(http, base):
    big = b'{"model": "' + b"x" * (30 * 1024 * 1024) + b'"}'  # 30 MB against a 256 KiB limit
    r = httpx.post(base + "/v1/chat/completions", content=big, headers={"content-type": "application/json"},
                   timeout=60)
    body = assert_clean_error(r, 413)
    assert str(256 * 1024) in body["message"]
    still_answers(http)


# ---------------------------------------------------------------- bounded property-based fuzzing
SPECIAL_TEXT = st.sampled_from(["", " ", "\ud800", "a\udfffb", "\x00", "é", "🙂", "[TOOL_CALLS]", "</s>", "\\"])
TEXT = st.one_of(st.text(max_size=12), st.text(max_size=12), SPECIAL_TEXT)
NUMBER = st.one_of(st.integers(-3, 9), st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([1e-45, 2**63, -(2**70), 0.5, 1.0, 2.0]))
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
JSON = st.recursive(SCALAR, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                   st.dictionaries(TEXT, kids, max_size=3)), max_leaves=8)
SCHEMA = st.recursive(
    st.fixed_dictionaries({"type": st.sampled_from(["string", "integer", "number", "boolean", "null", "foo"])}),
    lambda kids: st.one_of(
        st.fixed_dictionaries({"type": st.just("object"), "properties": st.dictionaries(TEXT, kids, max_size=3)},
                              optional={"required": st.lists(TEXT, max_size=2), "additionalProperties": JSON}),
        st.fixed_dictionaries({"type": st.just("array"), "items": kids},
                              optional={"minItems": NUMBER, "maxItems": NUMBER}),
        st.fixed_dictionaries({"anyOf": st.lists(kids, max_size=2)}),
        st.fixed_dictionaries({"$ref": st.sampled_from(["#", "#/nope", "#/properties"])}),
        JSON),
    max_leaves=6)
def mostly(good, bad):
    """Usually a plausible value (so requests get past validation and reach the model), sometimes junk."""
    return st.integers(0, 7).flatmap(lambda i: bad if i == 0 else good)  # (one_of would merge duplicate branches)


ROLE = mostly(st.just("user"), st.sampled_from(["system", "assistant", "tool", "robot", 3]))
MESSAGE = st.fixed_dictionaries({"role": ROLE, "content": mostly(TEXT, JSON)},
                                optional={"tool_calls": JSON, "tool_call_id": JSON, "prefix": JSON})
TOOL = mostly(st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries(
    {"name": mostly(st.just("f"), TEXT)}, optional={"parameters": SCHEMA, "description": JSON})}), JSON)
SMALL = st.one_of(st.integers(0, 4), st.floats(0, 2))
CHAT_BODY = st.fixed_dictionaries(
    {"model": mostly(st.just(CHAT), TEXT), "messages": mostly(st.lists(MESSAGE, min_size=1, max_size=3), JSON),
     "max_tokens": mostly(st.integers(0, 6), NUMBER)},
    optional={"temperature": mostly(SMALL, NUMBER), "top_p": mostly(st.floats(0.01, 1), NUMBER),
              "min_tokens": mostly(st.integers(0, 3), NUMBER), "random_seed": mostly(st.integers(0, 99), NUMBER),
              "stop": mostly(TEXT, JSON), "stream": st.booleans(), "n": mostly(st.just(1), NUMBER),
              "tools": mostly(st.lists(TOOL, min_size=1, max_size=2), JSON),
              "tool_choice": mostly(st.sampled_from(["auto", "any", "none", "required", {"function": {"name": "f"}},
                                                     {"type": "function", "function": {"name": "g"}}]), JSON),
              "response_format": mostly(st.one_of(
                  st.sampled_from([{"type": "json_object"}, {"type": "text"}]),
                  st.fixed_dictionaries({"type": st.just("json_schema"),
                                         "json_schema": st.fixed_dictionaries({"schema": SCHEMA})})), JSON)})
EMBED_BODY = st.fixed_dictionaries({"model": mostly(st.just("mistral-embed"), TEXT)},
                                   optional={"inputs": mostly(st.lists(TEXT, min_size=1, max_size=3), JSON),
                                             "input": mostly(st.lists(TEXT, min_size=1, max_size=2), JSON)})


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=st.integers(0, 7).flatmap(lambda i: EMBED_BODY if i == 0 else JSON if i == 1 else CHAT_BODY))
def test_fuzzed_bodies_never_get_a_5xx(http, body):
    embed = isinstance(body, dict) and ("inputs" in body or "input" in body)
    path = "/v1/embeddings" if embed else "/v1/chat/completions"
    text = json.dumps(body, allow_nan=True)  # NaN/Infinity tokens and \ud800 escapes, as an attacker would send
    r = post_raw(http, path, text)
    assert r.status_code < 500, (text[:300], r.text[:300])
    if r.headers.get("content-type", "").startswith("application/json"):
        json.loads(r.content)  # every answer, error or not, is strict JSON
    else:
        assert "internal_error" not in r.text, r.text[:300]


def test_server_still_answers_after_the_fuzzing(http):
    still_answers(http)


# ---------------------------------------------------------------- exposure
def test_public_host_without_a_key_is_refused_unless_asked_for(capsys):
    assert srv.main(["--model", "standin", "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "0.0.0.0" in err and srv.API_KEY_ENV in err and "--insecure-public" in err
    assert srv.is_loopback_host("127.0.0.1") and srv.is_loopback_host("::1") and srv.is_loopback_host("localhost")
    assert not srv.is_loopback_host("0.0.0.0") and not srv.is_loopback_host("192.168.1.5")


def test_401_says_bearer_and_health_shows_no_paths(engine, tmp_path):
    engine_path = str(tmp_path / "models" / "my-private-model")
    served = srv.ServedModels(engine_path, str(tmp_path / "embedders" / "mini"), 8192)
    assert engine_path not in json.dumps([served.chat_names(), served.embed_names()])
    assert srv.public_name(engine_path) == "my-private-model"
    assert srv.public_name("mistralai/Mistral-7B-Instruct-v0.3") == "mistralai/Mistral-7B-Instruct-v0.3"
    with srv.LocalServer(engine=engine, api_key="k-123") as url:
        r = httpx.post(url + "/v1/chat/completions", json={"model": CHAT, "messages": HI})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        health = httpx.get(url + "/health")
        assert health.status_code == 200 and "/" not in health.json()["model"].replace("mistralai/", "")
