"""Budget-aware decoding: a forced tool call or a JSON schema answer always completes within max_tokens,
or the endpoint says (400) how many tokens the smallest complete one needs. Over many seeds, at the edge."""

from __future__ import annotations

import json

import httpx
import jsonschema
import pytest

from helpers import endpoint as srv
from helpers.endpoint import SamplingParams
from helpers.settings import DEFAULT_LOCAL_EMBED_MODEL

USER = [{"role": "user", "content": "Weather in Paris?"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                                     "units": {"type": "string", "enum": ["C", "F"]}},
    "required": ["city", "units"]}}}
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}, "score": {"type": "number"},
                                           "tags": {"type": "array", "items": {"type": "string"}}},
          "required": ["answer", "score"]}


@pytest.fixture(scope="module")
def url():
    return srv.ensure_server(model="standin", embed_model=DEFAULT_LOCAL_EMBED_MODEL, device="cpu")


@pytest.fixture(scope="module")
def engine(url):
    return srv.running_engine(url)


def test_forced_tool_calls_complete_at_the_smallest_budgets_over_many_seeds(engine):
    prompt = engine.render(USER, tools=[WEATHER], tool_choice="any")
    need = engine.min_new_tokens(prompt)
    assert 5 < need < 64
    for seed in range(10):
        for max_tokens in (need, need + 3):
            gen = engine.generate(prompt, SamplingParams(max_tokens=max_tokens, seed=seed, temperature=1.0))
            assert gen.finish_reason == "tool_calls" and gen.tool_calls, (seed, max_tokens, gen.content)
            assert len(gen.ids) <= max_tokens
            args = json.loads(gen.tool_calls[0]["function"]["arguments"])
            jsonschema.validate(args, WEATHER["function"]["parameters"])


def test_json_schema_answers_complete_at_the_smallest_budget(engine):
    prompt = engine.render(USER, response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}})
    need = engine.min_new_tokens(prompt)
    for seed in range(8):
        gen = engine.generate(prompt, SamplingParams(max_tokens=need, seed=seed, temperature=1.0))
        assert gen.finish_reason == "stop", (seed, gen.content)
        jsonschema.validate(json.loads(gen.content), SCHEMA)


def test_a_budget_below_the_smallest_valid_answer_is_a_400_naming_it(url, engine):
    need = engine.min_new_tokens(engine.render(USER, tools=[WEATHER], tool_choice="any"))
    body = {"model": "mistral-small-latest", "messages": USER, "tools": [WEATHER], "tool_choice": "any",
            "max_tokens": need - 1}
    r = httpx.post(url + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 400
    assert f"at least {need} tokens" in r.json()["message"] and "max_tokens" in r.json()["message"]
    r = httpx.post(url + "/v1/chat/completions", json={**body, "max_tokens": need, "random_seed": 3}, timeout=60)
    assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "tool_calls"
    # tool_choice="auto" may answer in text, so it has no minimum; a call it starts must still fit
    r = httpx.post(url + "/v1/chat/completions", json={**body, "tool_choice": "auto", "max_tokens": 4}, timeout=60)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["tool_calls"] is None
