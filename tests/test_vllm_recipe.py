"""helpers.vllm: the `vllm serve` recipe and its memory arithmetic (no vLLM needed: `make vllm-check` asks vLLM)."""

from __future__ import annotations

import inspect

import pytest

from helpers import vllm
from helpers.device import PROFILES
from helpers.memory import load_config

GiB = 2**30
T4, A100 = PROFILES["t4"], PROFILES["a100-40gb"]


@pytest.fixture(scope="module")
def mistral7b():
    return load_config("mistral-7b-instruct-v0.3")


@pytest.fixture(scope="module")
def ministral3b():
    return load_config("ministral-3-3b-instruct-2512")


@pytest.fixture(scope="module")
def t4_recipe(ministral3b):
    return vllm.vllm_recipe(ministral3b, T4)


def test_t4_recipe_serves_ministral3_in_fp16(t4_recipe):
    argv = t4_recipe.argv()
    assert t4_recipe.fits, t4_recipe.problems()
    assert argv[:3] == ["vllm", "serve", "mistralai/Ministral-3-3B-Instruct-2512-BF16"]
    assert argv[argv.index("--dtype") + 1] == "half"  # a T4 has no native bf16
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.9"  # explicit: 0.34 leaves it unset
    assert "--quantization" not in argv and "bitsandbytes" not in t4_recipe.command()
    for flag in ("--tokenizer-mode", "--config-format", "--load-format", "--tool-call-parser"):
        assert argv[argv.index(flag) + 1] == "mistral"
    assert "--enable-auto-tool-choice" in argv


def test_t4_recipe_arithmetic(t4_recipe):
    assert t4_recipe.weights_bytes == 3_849_090_048 * 2  # parameters in fp16 (data/configs SOURCE.md)
    assert t4_recipe.kv_bytes_per_token == 26 * 8 * 128 * 2 * 2
    # 0.9 × 14.56 GiB − 7.17 GiB − 1 GiB ≈ 4.93 GiB of KV cache: 16k × 4 sequences do not fit, 8k × 4 do
    assert 4.9 * GiB < t4_recipe.kv_budget_bytes < 4.95 * GiB
    assert t4_recipe.max_model_len == 8192 and t4_recipe.sequences >= vllm.MIN_SEQUENCES
    longer = vllm.vllm_plan(load_config("ministral-3-3b-instruct-2512"), T4, max_model_len=16384)
    assert longer.fits and longer.sequences < vllm.MIN_SEQUENCES


def test_mistral7b_fp16_does_not_fit_vllm_on_a_t4(mistral7b):
    plan = vllm.vllm_recipe(mistral7b, T4, "mistral-7b")
    assert not plan.fits
    assert "quantized checkpoint" in plan.problems()[0]


def test_mistral7b_awq_fits_a_t4_without_bitsandbytes(mistral7b):
    plan = vllm.vllm_recipe(mistral7b, T4, "mistral-7b-awq")
    argv = plan.argv()
    assert plan.fits and plan.sequences >= vllm.MIN_SEQUENCES
    assert argv[argv.index("--quantization") + 1] == "awq"
    assert "--config-format" not in argv  # an HF-format checkpoint
    assert 4.1e9 < plan.weights_bytes < 4.2e9  # ≈ the 4.16 GB safetensors of an AutoAWQ 4-bit Mistral-7B-v0.3


def test_a_bf16_gpu_keeps_the_model_dtype_and_a_longer_context(ministral3b):
    plan = vllm.vllm_recipe(ministral3b, A100)
    assert plan.dtype == "auto" and plan.max_model_len == 32768 and plan.fits


@pytest.mark.parametrize("kwargs, expected", [
    ({"dtype": "auto"}, "no native bf16"),
    ({"max_model_len": 65536}, "cannot hold one 65,536-token sequence"),
])
def test_problems_name_the_flag_to_change(ministral3b, kwargs, expected):
    plan = vllm.vllm_plan(ministral3b, T4, **kwargs)
    assert not plan.fits
    assert any(expected in p for p in plan.problems()), plan.problems()


def test_max_model_len_past_the_models_positions_is_a_problem(mistral7b):
    plan = vllm.vllm_plan(mistral7b, A100, "mistral-7b", max_model_len=65536)
    assert any("32,768 positions" in p for p in plan.problems())


def test_unknown_checkpoint_names_the_known_ones(ministral3b):
    with pytest.raises(ValueError, match="ministral-3-3b"):
        vllm.vllm_plan(ministral3b, T4, "mistral-8b")


def test_to_vllm_request_renames_what_vllm_reads_differently():
    request = {"model": "m", "messages": [], "tool_choice": "any", "random_seed": 7, "temperature": 0}
    out, notes = vllm.to_vllm_request(request)
    assert out["tool_choice"] == "required" and out["seed"] == 7 and "random_seed" not in out
    assert len(notes) == 2
    assert request["tool_choice"] == "any" and request["random_seed"] == 7  # the caller's dict is left alone
    same, none = vllm.to_vllm_request({"model": "m", "messages": [], "tool_choice": "auto", "seed": 1})
    assert same["tool_choice"] == "auto" and same["seed"] == 1 and none == []


def test_colab_install_uses_its_own_venv_and_a_cuda12_build():
    lines = vllm.colab_install()
    install = [line for line in lines if " install " in line]
    assert lines[0] == "uv venv /content/vllm-env"  # Colab's python has no ensurepip for `python -m venv`
    assert install and all("--python /content/vllm-env/bin/python" in line for line in install)
    assert "vllm-0.34.0+cu128-" in install[0] and "download.pytorch.org/whl/cu128" in install[0]
    assert "UV_CONSTRAINT= " in install[0]  # Colab's own constraints would pin the venv to Colab's torch


def test_lesson_module_says_nothing_of_the_twin():
    assert "twin" not in inspect.getsource(vllm).lower()
