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


# ---------------------------------------------------------------- the offline model: steering that waits
# The course's forced-call examples (notebook 04's probes), with the id as a free string and shaped by a pattern.
PROBES = [("What's the status of my transaction T1001?", "T1001"), ("When was T1004 paid?", "T1004"),
          ("Has payment T1007 gone through?", "T1007"), ("On which date was transaction T1010 paid?", "T1010"),
          ("Is T1002 still pending?", "T1002"), ("What day did T1012 get paid?", "T1012")]


def _payment_tools(pattern: str | None) -> list[dict]:
    field = {"type": "string", "description": "The transaction id, e.g. T1001.", **({"pattern": pattern} if pattern else {})}
    return [{"type": "function", "function": {"name": name, "description": text, "parameters": {
        "type": "object", "properties": {"transaction_id": field}, "required": ["transaction_id"]}}}
        for name, text in (("retrieve_payment_status", "Get the payment status of a transaction."),
                           ("retrieve_payment_date", "Get the date a transaction was paid."))]


@pytest.fixture(scope="module")
def smollm():
    return srv.load_engine("smollm2-135m", "auto", "cpu")


def _greedy_call(engine, prompt, max_tokens):
    gen = engine.generate(prompt, SamplingParams(max_tokens=max_tokens, temperature=0.0, seed=7))
    assert gen.finish_reason == "tool_calls", (max_tokens, gen.content)
    return gen.tool_calls[0]["function"]["name"], gen.tool_calls[0]["function"]["arguments"], len(gen.ids)


@pytest.mark.parametrize("pattern", ["^T[0-9]{4}$", None])
def test_greedy_calls_at_the_minimum_plus_8_equal_those_at_128(smollm, pattern):
    """Budget steering takes over only when it must: with 8 tokens over the smallest complete call, the model's
    own greedy call (when it fits in that budget at all) comes out unchanged — no `","` or `]],]],…` values."""
    probes = PROBES[:4] if pattern else PROBES[:3]  # four and three probes keep the test short
    fitted = 0
    for question, _ in probes:
        # one call per answer (parallel_tool_calls=False): with several allowed, the model's own answer at 128
        # tokens may hold more calls than the smallest complete answer's budget could
        prompt = smollm.render([{"role": "user", "content": question}], tools=_payment_tools(pattern),
                               tool_choice="any", parallel_tool_calls=False)
        need = smollm.min_new_tokens(prompt)
        own = _greedy_call(smollm, prompt, 128)
        if own[2] > need + 8:  # the model's own call is longer than the budget: no decoder could keep it
            continue
        fitted += 1
        assert _greedy_call(smollm, prompt, need + 8)[:2] == own[:2], (question, need)
    assert fitted >= len(probes) - 1, f"only {fitted} of {len(probes)} calls fit in the minimum + 8"


def test_the_minimum_is_counted_in_the_tokens_the_tokenizer_uses(smollm):
    prompt = smollm.render([{"role": "user", "content": PROBES[0][0]}], tools=_payment_tools(None), tool_choice="any")
    plan = smollm.constraint_for(prompt).plan_to_finish()
    text = smollm.decode(plan)
    assert json.loads(text)[0]["arguments"] == {"transaction_id": ""}  # a free string is closed at once
    # no more tokens than the tokenizer's own spelling of the same text, plus the stop token
    assert len(plan) <= len(smollm.hf_tokenizer.encode(text, add_special_tokens=False)) + 1
    assert smollm.min_new_tokens(prompt) == len(plan)
