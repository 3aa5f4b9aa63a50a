"""Issue 30's request rules on the course endpoint: La Plateforme's message order (mistral-common's validator, plus
where the API is reported stricter), conversations the API accepts rendered Mistral's way, unknown fields as the API's
422 extra_forbidden, every accepted field honoured or refused by name, published ranges, the unknown-model answer,
streaming equal to non-streaming with tools, and the embedding dimension in /v1/models."""

from __future__ import annotations

import base64
import json
import struct

import httpx
import pytest
import torch
from mistralai.client import Mistral

from helpers import endpoint as srv
from helpers.endpoint import conformance, rules
from helpers.endpoint.prompts import SamplingParams, sample_token
from helpers.settings import DEFAULT_LOCAL_EMBED_MODEL

CHAT = "mistral-small-latest"
USER = [{"role": "user", "content": "What is the status of transaction T1001?"}]
CALL = {"role": "assistant", "content": "", "tool_calls": [
    {"id": "D681PevKs", "type": "function",
     "function": {"name": "retrieve_payment_status", "arguments": '{"transaction_id": "T1001"}'}}]}
RESULT = {"role": "tool", "name": "retrieve_payment_status", "tool_call_id": "D681PevKs", "content": '{"status": "Paid"}'}


@pytest.fixture(scope="module")
def url():
    return srv.ensure_server(model="standin", embed_model=DEFAULT_LOCAL_EMBED_MODEL, device="cpu")


@pytest.fixture(scope="module")
def smollm_url():
    with srv.LocalServer(model="smollm2-135m", embed_model=DEFAULT_LOCAL_EMBED_MODEL, device="cpu") as served:
        yield served


def post(url, path="/v1/chat/completions", **body):
    if path == "/v1/chat/completions":
        body = {"model": CHAT, "messages": USER, "max_tokens": 2, **body}
    return httpx.post(url + path, json=body, timeout=120)


# ---------------------------------------------------------------- message order: refused as La Plateforme refuses
@pytest.mark.parametrize("messages, words", [
    ([*USER, CALL, RESULT, {"role": "user", "content": "And T1002?"}], "Unexpected role 'user' after role 'tool'"),
    ([*USER, {"role": "assistant", "content": "It is paid."}], "Expected last role User or Tool"),
    ([*USER, RESULT], "Unexpected role 'tool' after role 'user'"),
    ([*USER, {"role": "assistant", "content": None}, *USER], "either content or tool_calls"),
    ([*USER, {"role": "assistant", "content": "Hi"}, {"role": "system", "content": "Be brief."}, *USER],
     "Unexpected role 'system' after role 'assistant'"),  # mistral-common refuses it, and so did the API (2024-08)
])
@pytest.mark.parametrize("which", ["standin", "smollm2"])
def test_a_conversation_the_api_refuses_is_a_400_in_its_shape_that_says_what_to_fix(url, smollm_url, which,
                                                                                    messages, words):
    r = post(url if which == "standin" else smollm_url, messages=messages)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["type"] == "invalid_request_message_order" and body["code"] == "3230"
    assert words in body["message"] and len(body["message"]) > len(words) + 20  # plus what to do about it


def test_the_api_stricter_rules_cite_dated_sources_and_the_validator_is_mistral_commons():
    for message, sources in rules.API_STRICTER.values():
        assert message and "20" in sources and ("#" in sources or "issue" in sources)
    from mistral_common.protocol.instruct.validator import MistralRequestValidator
    assert isinstance(rules._validator(), MistralRequestValidator)
    # the library itself lets a user message follow a tool result: that rule is the API's, not a copy of the library
    rules._validator()  # (constructed without error)
    with pytest.raises(rules.MessageOrderError, match="after role 'tool'"):
        rules.check_conversation([*USER, {**CALL, "content": None}, RESULT, *USER])


# ---------------------------------------------------------------- accepted as La Plateforme accepts, rendered its way
@pytest.mark.parametrize("messages", [
    [{"role": "assistant", "content": "Hello! How can I help?"}, *USER],  # an assistant greeting first
    [*USER, {"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Please."}],
    [{"role": "system", "content": "Be brief."}, {"role": "system", "content": "Be kind."}, *USER],
])
@pytest.mark.parametrize("which", ["standin", "smollm2"])
def test_conversations_the_validator_accepts_are_answered_on_both_prompt_formats(url, smollm_url, which, messages):
    r = post(url if which == "standin" else smollm_url, messages=messages)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] >= 1


def test_a_late_system_message_goes_where_mistrals_v3_format_puts_system_prompts():
    late = [*USER, {"role": "assistant", "content": "Paid."}, {"role": "user", "content": "Sure?"},
            {"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Please."}]
    laid = rules.mistral_layout(late)
    assert [m["role"] for m in laid] == ["user", "assistant", "user", "user"]
    assert laid[-1]["content"] == "Answer in French.\n\nPlease."  # before the last user message's text
    lead = rules.mistral_layout([{"role": "system", "content": "A"}, {"role": "system", "content": "B"}, *USER])
    assert lead[0] == {"role": "system", "content": "A\n\nB"} and lead[1:] == USER


# ---------------------------------------------------------------- fields: the API's 422, or honoured, or refused by name
@pytest.mark.parametrize("extra, loc", [
    ({"max_completion_tokens": 5}, ["body", "max_completion_tokens"]),
    ({"seed": 1}, ["body", "seed"]),
    ({"user": "u-1"}, ["body", "user"]),
    ({"messages": [{"role": "user", "content": "hi", "name": "ann"}]}, ["body", "messages", 0, "user", "name"]),
    ({"messages": [*USER, {"role": "assistant", "content": "x", "reasoning_content": "y"}, *USER]},
     ["body", "messages", 1, "assistant", "reasoning_content"]),
])
def test_unknown_fields_get_the_apis_422_extra_forbidden(url, extra, loc):
    r = post(url, **extra)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["object"] == "error" and body["type"] == "invalid_request_error" and body["code"] is None
    first = body["message"]["detail"][0]
    assert first["type"] == "extra_forbidden" and first["loc"] == loc
    assert first["msg"] == "Extra inputs are not permitted"


@pytest.mark.parametrize("extra, field", [
    ({"temperature": 1.6}, "temperature"),
    ({"tools": [{"type": "function", "function": {"name": "weather.get", "parameters": {}}}]}, "name"),
    ({"tools": [{"type": "function", "function": {"name": "f" * 65, "parameters": {}}}]}, "name"),
    ({"presence_penalty": 2.5}, "presence_penalty"),
])
def test_the_published_ranges_are_held(url, extra, field):
    r = post(url, **extra)
    assert r.status_code == 422 and r.json()["message"]["detail"][0]["loc"][-1] == field, r.text


def test_the_edges_of_the_published_ranges_are_accepted(url):
    assert post(url, temperature=1.5).status_code == 200
    ok = [{"type": "function", "function": {"name": "f_" + "x" * 62, "parameters": {"type": "object"}}}]
    assert post(url, tools=ok, tool_choice="none").status_code == 200


@pytest.mark.parametrize("extra, field, status", [
    ({"n": 2}, "n=2", 400),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]}, "text only", 400),
    ({"prediction": {"type": "content", "content": "The status"}}, "prediction", 400),
    ({"prompt_mode": "reasoning"}, "prompt_mode", 400),
    ({"top_k": 5}, "top_k", 400),
    ({"repetition_penalty": 1.1}, "repetition_penalty", 400),
    ({"guardrails": [{"block_on_error": True}]}, "guardrails", 400),
])
def test_what_the_endpoint_deliberately_does_not_serve_is_a_4xx_naming_the_difference(url, extra, field, status):
    r = post(url, **extra)
    assert r.status_code == status and field in r.json()["message"], r.text


def test_the_fields_the_unmodified_sdk_sends_are_accepted(url):
    client = Mistral(api_key="any", server_url=url)
    r = client.chat.complete(model=CHAT, messages=USER, max_tokens=2, metadata={"run": "t"}, safe_prompt=False,
                             presence_penalty=0.0, frequency_penalty=0.0, prediction={"type": "content", "content": ""})
    assert r.usage.completion_tokens >= 1
    assert client.embeddings.create(model="mistral-embed", inputs=["x"], metadata={"run": "t"}, output_dtype="float",
                                    encoding_format="float").data[0].embedding


def test_safe_prompt_prepends_the_documented_system_prompt(url):
    plain = post(url, safe_prompt=False).json()["usage"]["prompt_tokens"]
    safe = post(url, safe_prompt=True).json()["usage"]["prompt_tokens"]
    assert safe - plain >= 25  # the 34-word safety prompt, tokenized into the prompt
    assert rules.with_safe_prompt(USER, True)[0] == {"role": "system", "content": rules.SAFE_PROMPT}
    assert rules.with_safe_prompt(USER, False) == USER


def test_penalties_lower_the_tokens_already_generated():
    logits = torch.tensor([[3.0, 2.5, 0.0]])
    greedy = SamplingParams(temperature=0.0)
    assert sample_token(logits.clone(), greedy, None, [0]) == 0  # no penalty: the likeliest
    presence = SamplingParams(temperature=0.0, presence_penalty=1.0)
    assert sample_token(logits.clone(), presence, None, [0]) == 1  # 3.0 - 1.0 < 2.5
    frequency = SamplingParams(temperature=0.0, frequency_penalty=0.3)
    assert sample_token(logits.clone(), frequency, None, [0]) == 0  # seen once: 2.7 > 2.5
    assert sample_token(logits.clone(), frequency, None, [0, 0]) == 1  # seen twice: 2.4 < 2.5


def test_penalties_change_a_greedy_answer_on_the_endpoint(url):
    ask = [{"role": "user", "content": "Repeat: payment payment payment payment payment"}]
    text = [post(url, messages=ask, max_tokens=24, temperature=0.0, frequency_penalty=f).json()["choices"][0]
            ["message"]["content"] for f in (0.0, 2.0)]
    assert text[0] != text[1], text


def test_embeddings_base64_output_dimension_and_dtype(url):
    floats = post(url, "/v1/embeddings", model="mistral-embed", input=["a card payment"]).json()["data"][0]["embedding"]
    r = post(url, "/v1/embeddings", model="mistral-embed", input=["a card payment"], encoding_format="base64")
    raw = base64.b64decode(r.json()["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert len(decoded) == len(floats) and max(abs(a - b) for a, b in zip(decoded, floats, strict=True)) < 1e-6
    for extra, field in (({"output_dimension": 256}, "output_dimension"), ({"output_dtype": "int8"}, "output_dtype")):
        r = post(url, "/v1/embeddings", model="mistral-embed", input=["x"], **extra)
        assert r.status_code == 400 and field in r.json()["message"], r.text
    r = post(url, "/v1/embeddings", model="mistral-embed", inputs=["x"])  # the published schema's name is `input`
    assert r.status_code == 422 and r.json()["message"]["detail"][0]["type"] == "extra_forbidden"


def test_an_unknown_model_is_answered_as_the_api_answers_it(url):
    for path, extra in (("/v1/chat/completions", {}), ("/v1/embeddings", {"input": ["x"]})):
        r = post(url, path, model="mistral-tiniest-latest", **extra) if extra else post(url, model="mistral-tiniest")
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["type"] == "invalid_model" and body["code"] == "1500" and body["message"].startswith("Invalid model: ")


# ---------------------------------------------------------------- streaming equals non-streaming
def _calls(message) -> list:
    return [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]


def _streamed(client, **request) -> tuple[str, list, str | None]:
    text, calls, finish = [], [], None
    for event in client.chat.stream(**request):
        choice = event.data.choices[0]
        text.append(choice.delta.content or "")
        calls += [(c.function.name, json.loads(c.function.arguments)) for c in choice.delta.tool_calls or []]
        finish = choice.finish_reason or finish
    return "".join(text), calls, finish


TOOL_REQUESTS = {"auto": "auto", "required": "required", "none": "none",
                 "named": {"type": "function", "function": {"name": "retrieve_payment_date"}}}


@pytest.mark.parametrize("which", ["standin", "smollm2"])
def test_the_conformance_tool_requests_give_the_same_calls_streamed_or_not(url, smollm_url, which):
    client = Mistral(api_key="any", server_url=url if which == "standin" else smollm_url)
    seen_calls = 0
    for name, choice in TOOL_REQUESTS.items():
        for seed in (0, 1, 2) if which == "standin" else (0,):  # SmolLM2 decodes ~50× slower: one seed per choice
            request = dict(model=CHAT, messages=conformance.ASK_TOOL, tools=conformance.TOOLS, tool_choice=choice,
                           max_tokens=48, temperature=0.7, random_seed=seed)
            whole = client.chat.complete(**request).choices[0]
            text, calls, finish = _streamed(client, **request)
            assert calls == _calls(whole.message), (name, seed)
            assert finish == whole.finish_reason and "<tool_call>" not in text, (name, seed, text)
            assert text == (whole.message.content or ""), (name, seed)
            seen_calls += len(calls)
    assert seen_calls > 0


def test_a_call_written_as_tool_call_text_is_streamed_as_tool_calls_not_as_text(smollm_url):
    """SmolLM2 writes calls as <tool_call> text (here the call is the assistant prefix, so a call surely comes):
    the non-streamed answer returns it as tool_calls, and so must the stream, with none of the markup as text."""
    call = '<tool_call>\n{"name": "retrieve_payment_status", "arguments": {"transaction_id": "T1001"}}\n</tool_call>'
    client = Mistral(api_key="any", server_url=smollm_url)
    request = dict(model=CHAT, messages=[*conformance.ASK_TOOL, {"role": "assistant", "content": call, "prefix": True}],
                   tools=conformance.TOOLS, tool_choice="auto", max_tokens=2, temperature=0.0)
    whole = client.chat.complete(**request).choices[0].message
    assert _calls(whole) == [("retrieve_payment_status", {"transaction_id": "T1001"})] and not whole.content
    text, calls, _ = _streamed(client, **request)
    assert calls == _calls(whole) and text == "", text


def test_tagged_call_text_is_held_back_from_the_stream():
    held = rules.TaggedCallFilter()
    out = [held.feed(piece) for piece in ["Let me ", "check. <tool", "_call>{\"name\": ", "\"f\"}</tool_call>"]]
    assert "".join(out) == "Let me check." and "<" not in "".join(out)
    assert held.finish("Let me check.") == ""
    plain = rules.TaggedCallFilter()
    assert plain.feed("a < b ") == "a < b" and plain.finish("a < b and more") == " and more"


# ---------------------------------------------------------------- the embedding alias says what it is
def test_models_give_each_embedding_models_dimension(url):
    cards = {c["id"]: c for c in httpx.get(url + "/v1/models", timeout=60).json()["data"]}
    vector = post(url, "/v1/embeddings", model="mistral-embed", input=["x"]).json()["data"][0]["embedding"]
    embed = cards["mistral-embed"]
    assert embed["embedding_dimension"] == len(vector) and f"{len(vector)}-dimensional" in embed["description"]
    assert "embedding_dimension" not in cards[CHAT]
    card = Mistral(api_key="any", server_url=url).models.retrieve(model_id="mistral-embed")
    assert str(len(vector)) in card.description  # what the SDK keeps of the card
