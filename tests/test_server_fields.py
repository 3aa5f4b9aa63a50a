"""The chat fields SDK 3.x added, on the course endpoint: validated at the edge, and honoured as the API defines them.

parallel_tool_calls (both prompt formats: mistral-common v3 with the stand-in, SmolLM2's ChatML template), `strict`
functions, logprobs in the SDK's shape (the model's real log-probabilities), prompt caching reported where La
Plateforme reports it, reasoning_effort refused with a reason, guardrails and prompt_logprobs refused, and the
Conversations API answered with a clear 404.
"""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from mistralai.client import Mistral
from mistralai.client.errors import MistralError
from mistralai.client.models import ChatCompletionResponseTokenLogprobsTopK

from helpers import catalog
from helpers import endpoint as srv
from helpers.endpoint.constrained import Bounds, tool_calls_schema
from helpers.endpoint.prompts import Prompt, SamplingParams, keep_calls, parse_tagged_calls
from helpers.settings import DEFAULT_LOCAL_EMBED_MODEL

CHAT = "mistral-small-latest"
USER = [{"role": "user", "content": "What is the status of transaction T1001?"}]
TOOLS = [{"type": "function", "function": {
    "name": name, "description": what,
    "parameters": {"type": "object", "properties": {"transaction_id": {"type": "string", "pattern": "^T[0-9]{4}$"}},
                   "required": ["transaction_id"]}}}
    for name, what in (("retrieve_payment_status", "Get the payment status of a transaction."),
                       ("retrieve_payment_date", "Get the date a transaction was paid."))]
ASK_TWO = [{"role": "system", "content": "Call one function per transaction: several calls in one answer are allowed."},
           {"role": "user", "content": "Status of T1001 and T1005, please."}]


@pytest.fixture(scope="module")
def url():
    return srv.ensure_server(model="standin", embed_model=DEFAULT_LOCAL_EMBED_MODEL, device="cpu")


@pytest.fixture(scope="module")
def client(url):
    return Mistral(api_key="any", server_url=url)


def post(url, **body):
    return httpx.post(url + "/v1/chat/completions", json={"model": CHAT, "messages": USER, "max_tokens": 2, **body},
                      timeout=60)


# ---------------------------------------------------------------- validated at the edge: a 4xx that names the field
@pytest.mark.parametrize("field, value, status", [
    ("parallel_tool_calls", "yes", 422), ("parallel_tool_calls", 1, 422),
    ("logprobs", "maybe", 422), ("top_logprobs", 21, 422), ("top_logprobs", -1, 422),
    ("reasoning_effort", "extreme", 422), ("reasoning_effort", "high", 400),
    ("prompt_cache_key", "", 422), ("prompt_cache_key", "k" * 513, 422), ("prompt_cache_key", 7, 422),
    ("guardrails", [{"block_on_error": True}], 400), ("prompt_logprobs", True, 400),
])
def test_a_bad_or_unservable_value_is_a_4xx_naming_the_field(url, field, value, status):
    extra = {"logprobs": True} if field == "top_logprobs" else {}
    r = post(url, **{field: value}, **extra)
    assert r.status_code == status, r.text
    assert field in json.dumps(r.json()["message"]), r.json()["message"]  # a 422: the field is in detail[].loc


def test_strict_must_be_a_boolean_and_top_logprobs_needs_logprobs_and_no_stream(url):
    bad_tool = [{"type": "function", "function": {**TOOLS[0]["function"], "strict": "yes"}}]
    r = post(url, tools=bad_tool)
    assert r.status_code == 422 and r.json()["message"]["detail"][0]["loc"][-1] == "strict"
    r = post(url, top_logprobs=3)
    assert r.status_code == 400 and "top_logprobs needs logprobs" in r.json()["message"]
    r = post(url, logprobs=True, stream=True)
    assert r.status_code == 400 and "stream" in r.json()["message"]


def test_the_valid_values_are_accepted(url):
    for body in ({"reasoning_effort": "none"}, {"prompt_cache_key": "session-1"}, {"parallel_tool_calls": False},
                 {"logprobs": True, "top_logprobs": 0}, {"logprobs": False}, {"guardrails": None}):
        r = post(url, **body)
        assert r.status_code == 200, (body, r.text)


# ---------------------------------------------------------------- logprobs
def test_logprobs_come_back_in_the_sdks_shape_and_greedy_takes_the_likeliest(client):
    r = client.chat.complete(model=CHAT, messages=USER, max_tokens=4, min_tokens=4, temperature=0.0, logprobs=True,
                             top_logprobs=5)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens == 4
    for tok in content:
        assert isinstance(tok, ChatCompletionResponseTokenLogprobsTopK)
        values = [a.logprob for a in tok.top_logprobs]
        assert len(values) == 5 and values == sorted(values, reverse=True) and values[0] <= 0.0
        assert tok.top_logprobs[0].token_id == tok.token_id and tok.logprob == values[0]
        assert tok.bytes_ == list(tok.token.encode("utf-8"))
    text = "".join(t.token for t in content)
    assert text == r.choices[0].message.content


def test_no_logprobs_unless_asked(url):
    choice = post(url).json()["choices"][0]
    assert "logprobs" not in choice or choice["logprobs"] is None


def test_logprobs_are_the_models_own_log_softmax(url):
    engine = srv.running_engine(url)
    prompt = engine.render(USER)
    gen = engine.generate(prompt, SamplingParams(max_tokens=1, temperature=0.0, logprobs=3))
    with torch.inference_mode():
        logits = engine.model(input_ids=torch.tensor([prompt.ids])).logits[0, -1].float()
    expected = torch.log_softmax(logits, -1)
    top = torch.topk(expected, 3)
    entry = gen.logprobs[0]
    assert entry["token_id"] == gen.ids[0] == int(top.indices[0])
    assert entry["logprob"] == pytest.approx(float(expected[gen.ids[0]]), abs=1e-4)
    assert [a["token_id"] for a in entry["top_logprobs"]] == [int(i) for i in top.indices]
    assert [a["logprob"] for a in entry["top_logprobs"]] == pytest.approx([float(v) for v in top.values], abs=1e-4)


def test_logprobs_batched_match_logprobs_alone(client):
    prompts = [[{"role": "user", "content": f"Say something about the number {i}."}] for i in range(4)]

    def one(messages):
        r = client.chat.complete(model=CHAT, messages=messages, max_tokens=3, min_tokens=3, temperature=0.0,
                                 logprobs=True, top_logprobs=2)
        return [(t.token_id, t.logprob) for t in r.choices[0].logprobs.content]

    alone = [one(m) for m in prompts]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(one, prompts))
    for a, b in zip(alone, together, strict=True):
        assert [t for t, _ in a] == [t for t, _ in b]  # greedy answers unchanged by batching
        assert [lp for _, lp in a] == pytest.approx([lp for _, lp in b], abs=1e-3)


# ---------------------------------------------------------------- prompt caching, reasoning_effort, conversations
def test_a_repeated_prefix_is_reported_as_cached_tokens_where_the_sdk_reads_them(client):
    system = {"role": "system", "content": "You answer questions about Harbourline Bank's payments. " * 8}
    client.chat.complete(model=CHAT, messages=[{"role": "user", "content": "Something else entirely."}], max_tokens=1)
    first = client.chat.complete(model=CHAT, messages=[system, *USER], max_tokens=1, prompt_cache_key="s1")
    second = client.chat.complete(model=CHAT, messages=[system, {"role": "user", "content": "And T1002?"}],
                                  max_tokens=1, prompt_cache_key="s1")
    assert catalog.cached_tokens(first.usage) == 0  # after an unrelated prompt nothing is shared
    hit = catalog.cached_tokens(second.usage)
    assert 40 < hit < second.usage.prompt_tokens  # the system prompt was reused, the new question was not


def test_reasoning_effort_high_is_refused_with_the_reason_and_none_is_accepted(client):
    with pytest.raises(MistralError) as err:
        client.chat.complete(model=CHAT, messages=USER, max_tokens=2, reasoning_effort="high")
    assert err.value.status_code == 400
    message = json.loads(err.value.body)["message"]
    assert "reasoning_effort='high'" in message and "no reasoning mode" in message
    assert client.chat.complete(model=CHAT, messages=USER, max_tokens=2, reasoning_effort="none").choices


def test_the_conversations_api_gets_a_clear_404(client):
    with pytest.raises(MistralError) as err:
        client.beta.conversations.start(model=CHAT, inputs="hello")
    assert err.value.status_code == 404
    assert "Conversations API" in json.loads(err.value.body)["message"]
    with pytest.raises(MistralError) as err:
        client.beta.conversations.append(conversation_id="conv_1", inputs="again")
    assert err.value.status_code == 404


# ---------------------------------------------------------------- parallel_tool_calls and strict
def test_the_call_grammar_allows_one_call_or_several():
    assert tool_calls_schema(TOOLS)["maxItems"] == 1
    schema = tool_calls_schema(TOOLS, Bounds(), max_calls=3)
    assert (schema["minItems"], schema["maxItems"]) == (1, 3)


def test_parallel_tool_calls_on_the_mistral_v3_format(client):
    def calls(parallel, seed):
        r = client.chat.complete(model=CHAT, messages=ASK_TWO, tools=TOOLS, tool_choice="any", temperature=1.0,
                                 random_seed=seed, max_tokens=200, parallel_tool_calls=parallel)
        got = r.choices[0].message.tool_calls or []
        for c in got:
            assert c.function.name in {t["function"]["name"] for t in TOOLS}
            assert json.loads(c.function.arguments)["transaction_id"][0] == "T"  # the schema's pattern held
        return len(got)

    off = [calls(False, seed) for seed in range(6)]
    on = [calls(True, seed) for seed in range(6)]
    assert off == [1] * 6  # never more than one call without parallel_tool_calls
    assert max(on) > 1 and max(on) <= Bounds.for_model(is_standin=True).max_items and min(on) >= 1, on


@pytest.fixture(scope="module")
def smollm_client():
    with srv.LocalServer(model="smollm2-135m", embed_model=DEFAULT_LOCAL_EMBED_MODEL, device="cpu") as served:
        yield Mistral(api_key="any", server_url=served)


def test_parallel_tool_calls_on_the_smollm2_chatml_template(smollm_client):
    def calls(parallel):
        r = smollm_client.chat.complete(model=CHAT, messages=ASK_TWO, tools=TOOLS, tool_choice="any",
                                        temperature=0.0, max_tokens=64, parallel_tool_calls=parallel)
        assert r.choices[0].finish_reason == "tool_calls"
        got = r.choices[0].message.tool_calls or []
        assert len({c.id for c in got}) == len(got)
        return [(c.function.name, json.loads(c.function.arguments)["transaction_id"]) for c in got]

    off, on = calls(False), calls(True)
    assert len(off) == 1
    assert len(on) == 2 and on[0] == off[0]  # greedy: the same first call, then a second one (measured 2026-12-01)


def test_calls_read_from_text_keep_one_without_parallel_and_drop_strict_ones_that_break_the_schema():
    text = ('<tool_call>{"name": "retrieve_payment_status", "arguments": {"transaction_id": "T1001"}}</tool_call>'
            '<tool_call>{"name": "retrieve_payment_date", "arguments": {"transaction_id": "1005"}}</tool_call>')
    calls, rest = parse_tagged_calls(text, TOOLS, random.Random(0))
    assert len(calls) == 2 and rest == ""
    loose = Prompt(ids=[1], tools=TOOLS, mode="tools_auto")
    assert [c["function"]["name"] for c in keep_calls([dict(c) for c in calls], loose)] == [
        "retrieve_payment_status", "retrieve_payment_date"]  # not strict: the bad id is the caller's to check
    one = keep_calls([dict(c) for c in calls], Prompt(ids=[1], tools=TOOLS, mode="tools_auto", parallel=False))
    assert [c["function"]["name"] for c in one] == ["retrieve_payment_status"]
    strict_tools = [{"type": "function", "function": {**t["function"], "strict": True}} for t in TOOLS]
    kept = keep_calls([dict(c) for c in calls], Prompt(ids=[1], tools=strict_tools, mode="tools_auto"))
    assert [c["function"]["name"] for c in kept] == ["retrieve_payment_status"] and kept[0]["index"] == 0
    bad_only = [dict(calls[1])]
    assert keep_calls(bad_only, Prompt(ids=[1], tools=strict_tools, mode="tools_auto")) is None


def test_a_strict_function_gets_a_call_that_follows_its_schema(client):
    strict = [{"type": "function", "function": {**t["function"], "strict": True}} for t in TOOLS]
    r = client.chat.complete(model=CHAT, messages=USER, tools=strict, tool_choice="any", temperature=1.0,
                             random_seed=3, max_tokens=40)
    call = r.choices[0].message.tool_calls[0]
    import jsonschema

    jsonschema.validate(json.loads(call.function.arguments), TOOLS[0]["function"]["parameters"])
