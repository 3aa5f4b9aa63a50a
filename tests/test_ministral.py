"""Ministral 3 (a language model with a vision encoder, `Mistral3ForConditionalGeneration`) through the course's own
loader and endpoint, as a T4 with a token serves Ministral 3 3B: here a tiny random-weight model of the same class,
built from the shipped config with shrunk widths (the real checkpoint is not on PyPI)."""

from __future__ import annotations

import json

import pytest

from helpers import memory, selfhost
from helpers.course.standin import build_mistral_tokenizer

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def tiny_ministral(tmp_path_factory):
    import torch
    from transformers import AutoConfig, Mistral3ForConditionalGeneration

    data = json.loads((memory.configs_dir() / "ministral-3-3b-instruct-2512" / "config.json").read_text())
    data["text_config"].update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                               num_key_value_heads=2, head_dim=16, vocab_size=32768, max_position_embeddings=4096)
    data["vision_config"].update(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                 head_dim=16)
    torch.manual_seed(0)
    model = Mistral3ForConditionalGeneration(AutoConfig.for_model(**data))
    model.generation_config.do_sample = False
    path = tmp_path_factory.mktemp("ministral") / "tiny-ministral-3"
    model.save_pretrained(path)
    build_mistral_tokenizer(path, "v3", model_max_length=4096)
    return path


def test_the_shipped_config_counts_as_the_model_card_says():
    config = memory.load_config("ministral-3-3b-instruct-2512")
    assert memory.model_class(config).__name__ == "AutoModelForImageTextToText"
    assert memory.count_parameters(config).total == 3_849_090_048  # 3.4B language model + 0.4B vision encoder
    assert memory.kv_bytes_per_token(config) == 26 * 8 * 128 * 2 * 2  # its language model's layers and KV heads


def test_the_loader_loads_the_vision_language_class_and_generates_text(tiny_ministral):
    lm = selfhost.load_model(str(tiny_ministral), "fp32", "cpu")
    assert type(lm.model).__name__ == "Mistral3ForConditionalGeneration"
    from helpers import inference

    out = inference.generate(lm, [{"role": "user", "content": "Hello"}], max_new_tokens=4)
    assert out.new_tokens == 4


def test_the_course_endpoint_serves_it_through_the_unmodified_sdk(tiny_ministral):
    from mistralai.client import Mistral

    from helpers.endpoint import LocalServer

    with LocalServer(model=str(tiny_ministral), precision="fp32") as url:
        client = Mistral(api_key="x", server_url=url)
        reply = client.chat.complete(model="mistral-small-latest", max_tokens=4, temperature=0.0,
                                     messages=[{"role": "user", "content": "Hello"}])
        assert reply.usage.completion_tokens == 4 and reply.choices[0].finish_reason == "length"
        tools = [{"type": "function", "function": {"name": "get_status", "description": "Status of a payment.",
                  "parameters": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}}}]
        forced = client.chat.complete(model="mistral-small-latest", max_tokens=48, temperature=0.0, tools=tools,
                                      tool_choice="required", messages=[{"role": "user", "content": "T1001?"}])
        assert forced.choices[0].message.tool_calls[0].function.name == "get_status"  # constrained: always well-formed
