"""helpers.course.gpu and helpers.loadspec: the GPU ledger, the twins, one load plan, and vLLM commands that fit."""

from __future__ import annotations

import gc

import pytest

from helpers import memory, selfhost, settings, vllm
from helpers.course import gpu
from helpers.course.gpu import PROFILES, Ask, GiB, GpuBudgetError, Ledger
from helpers.load_errors import ModelLoadError

MISTRAL = "mistralai/Mistral-7B-Instruct-v0.3"
V03 = memory.load_config("mistral-7b-instruct-v0.3")


class Model:  # anything with a lifetime: the ledger follows it with a weakref
    pass


def t4() -> Ledger:
    return Ledger(PROFILES["t4"], twin=True)


# ---------------------------------------------------------------- the ledger
def test_ledger_counts_context_once_and_tracks_the_peak():
    book = t4()
    assert book.used_bytes() == 0
    first = book.admit(Ask("a", "notebook", 2 * GiB, GiB // 2, model="a"))
    book.admit(Ask("b", "embeddings", GiB, 0, model="b"))
    assert book.used_bytes() == int(3.5 * GiB) + gpu.CUDA_CONTEXT_BYTES
    book.release(first)
    assert book.used_bytes() == GiB + gpu.CUDA_CONTEXT_BYTES
    assert book.peak_bytes == int(3.5 * GiB) + gpu.CUDA_CONTEXT_BYTES and len(book.report()["resident_at_peak"]) == 2


def test_refusal_names_what_is_resident_the_numbers_and_what_would_fit():
    book = t4()
    book.admit(Ask("mistral nf4 (the course endpoint)", "the course endpoint", 4 * GiB, 0, model="m"))
    with pytest.raises(GpuBudgetError) as err:
        book.admit(Ask("other fp16", "notebook", int(10.5 * GiB), 0, (("other at nf4", 3 * GiB),), model="o"))
    text = str(err.value)
    assert "Refused before loading" in text and "mistral nf4" in text and "10.50 GiB" in text and "short" in text
    assert "load other at nf4 instead" in text and "unload mistral nf4" in text
    assert isinstance(err.value, ModelLoadError)  # callers that catch load errors catch this one too
    assert len(book.residents) == 1  # nothing was registered


def test_a_second_copy_of_a_resident_model_is_refused_even_when_it_fits():
    book = t4()
    book.admit(Ask(f"{MISTRAL} (nf4)", "the course endpoint", 4 * GiB, 0, model=MISTRAL))
    with pytest.raises(GpuBudgetError, match="already on the Tesla T4 twin.*served_model"):
        book.check(Ask(f"{MISTRAL} (nf4)", "notebook", 4 * GiB, 0, model=MISTRAL))


def test_held_models_leave_the_ledger_when_they_are_collected():
    book = t4()
    model = Model()
    book.hold(model, book.admit(Ask("x", "notebook", GiB, 0, model="x")))
    assert book.residents
    del model
    gc.collect()
    assert not book.residents and book.used_bytes() == 0


def test_one_process_one_gpu():
    assert gpu.ledger_for("cpu") is None and gpu.current_ledger() is None
    book = gpu.ledger_for("twin:t4")
    assert gpu.ledger_for("twin:t4") is book and book.twin and book.capacity_bytes == int(14.56 * GiB)
    with pytest.raises(ValueError, match="one process has one GPU"):
        gpu.ledger_for("twin:l4")


def test_metrics_on_a_twin_even_before_anything_loads():
    assert gpu.metrics("cpu") == {}
    report = gpu.metrics("twin:l4")["gpu_twin"]
    assert report["profile"] == "l4" and report["peak_bytes"] == 0 and "predicted" in report["kind"]


def test_unknown_twin_is_a_clear_error():
    with pytest.raises(ValueError, match="twin:t4, twin:l4, twin:a100-40gb"):
        gpu.twin_profile("twin:h100")
    with pytest.raises(settings.SettingsError, match="no GPU twin named 'v100'"):
        settings.resolve(DEVICE="twin:v100", BACKEND="local")


# ---------------------------------------------------------------- the twin's decisions, in settings and the plan
def test_twin_decides_as_that_gpu_with_a_token(clean_settings_env):
    cfg = settings.resolve(DEVICE="twin:t4", BACKEND="local")
    assert cfg.device == "twin:t4" and cfg.torch_device == "cpu"
    # every name a notebook sees means what it means on the card; only the loader swaps in what computes
    assert cfg.gpu_model == cfg.local_model == settings.DEFAULT_HUB_MODEL and cfg.computes == settings.SMOLLM
    assert "Ministral-3-3B" in settings.DEFAULT_HUB_MODEL  # the model La Plateforme serves as ministral-3b-latest
    story = settings.resolve(DEVICE="twin:t4", BACKEND="local", auto_model=settings.MISTRAL_7B)  # 06 and 07
    assert story.local_model == MISTRAL and story.computes == settings.SMOLLM
    assert "SmolLM2-135M-Instruct" in cfg.answered_by and "Tesla T4 twin" in cfg.answered_by
    explicit = settings.resolve(DEVICE="twin:t4", BACKEND="local", LOCAL_MODEL="smollm2-135m")
    assert explicit.gpu_model == explicit.local_model == explicit.computes == settings.SMOLLM


def test_under_the_twin_every_name_for_the_endpoint_model_is_refused_as_a_second_copy(clean_settings_env):
    """After get_client(cfg) the endpoint holds the GPU model; loading it again by cfg, cfg.local_model, its hub id
    or "auto" is refused with the ledger's message, as a real T4 with a token would run out of memory."""
    from helpers.client import get_client

    gpu.reset_ledger()
    cfg = settings.resolve(DEVICE="twin:t4", BACKEND="local")
    get_client(cfg)  # starts the course endpoint, which loads the GPU model
    for name in (cfg, cfg.local_model, settings.DEFAULT_HUB_MODEL, "auto"):
        args = (name, "auto") if name is cfg else (name, "auto", cfg.device)
        with pytest.raises(GpuBudgetError, match="already on the Tesla T4 twin"):
            selfhost.load_model(*args)
    resident = gpu.current_ledger().report()["resident_now"]
    assert sum(settings.DEFAULT_HUB_MODEL in r for r in resident) == 1  # one copy: the endpoint's


def test_auto_precision_is_fp16_when_it_fits_and_nf4_when_not(clean_settings_env):
    cfg = settings.resolve(DEVICE="twin:t4", BACKEND="local", auto_model=settings.MISTRAL_7B)
    short = selfhost.plan_load(cfg, "auto", kv_tokens=512)
    assert short.target_precision == "fp16" and short.precision == "fp32"  # the CPU computes in its own dtype
    long = selfhost.plan_load(cfg, "auto", kv_tokens=4096)
    assert long.target_precision == "nf4" and long.precision == "fp32" and "would not fit" in long.why
    gpu.reset_ledger()
    asked = selfhost.plan_load(cfg, "nf4", kv_tokens=4096)  # asked for by name: the bitsandbytes path runs too
    assert asked.target_precision == asked.precision == "nf4"
    assert abs(long.gpu_weights_bytes - memory.weight_bytes(V03, "nf4") - memory.quant_constants_bytes(V03, "nf4")) < 1
    assert long.gpu_kv_bytes == 4096 * 128 * 1024  # Mistral-7B: 128 KiB per token at fp16
    gpu.reset_ledger()
    roomy = selfhost.plan_load(MISTRAL, "auto", "twin:l4", kv_tokens=4096)
    assert roomy.target_precision == "fp16" and roomy.model == settings.SMOLLM


def test_fp16_with_a_long_context_is_refused_on_a_t4_twin_with_the_alternatives():
    with pytest.raises(GpuBudgetError, match=r"(?s)fp16\) would not fit on the Tesla T4.*at nf4 instead"):
        selfhost.plan_load(MISTRAL, "fp16", "twin:t4", kv_tokens=4096)


def test_bf16_follows_the_twin_gpu():
    with pytest.raises(ModelLoadError, match="Tesla T4 has no native bf16"):
        selfhost.plan_load(MISTRAL, "bf16", "twin:t4", kv_tokens=0)
    gpu.reset_ledger()
    assert selfhost.plan_load(MISTRAL, "bf16", "twin:a100-40gb").target_precision == "bf16"


def test_the_twin_refuses_a_second_copy_of_the_endpoint_model():
    """09 as it was: the endpoint holds the GPU model, then the notebook loads "the same model" again."""
    lm = selfhost.load_model(MISTRAL, "auto", "twin:t4", owner="the course endpoint")
    try:
        assert lm.name == settings.SMOLLM and "Tesla T4 twin" in lm.stands_in_for
        with pytest.raises(GpuBudgetError, match="already on the Tesla T4 twin"):
            selfhost.load_model(MISTRAL, "auto", "twin:t4")
    finally:
        selfhost.unload(lm)
        del lm
        gc.collect()
    assert not gpu.current_ledger().residents  # unloaded and collected: off the ledger


def test_a_load_reads_each_config_once(monkeypatch):
    from transformers import AutoConfig

    reads = []
    real = AutoConfig.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        reads.append(args[0] if args else kwargs)
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(AutoConfig, "from_pretrained", classmethod(counting))
    lm = selfhost.load_model("smollm2-135m", "fp32", "cpu")
    assert len(reads) == 1, reads  # plan, preflight, footprint and from_pretrained all read the same object
    assert lm.spec.config is lm.model.config or lm.spec.config.to_dict() == lm.model.config.to_dict()
    reads.clear()
    selfhost.plan_load(MISTRAL, "auto", "twin:t4")
    assert len(reads) == 2, reads  # the target's shipped config, and the config of SmolLM2 that computes


def test_a_missing_folder_says_so_before_transformers_is_called(tmp_path):
    with pytest.raises(ModelLoadError, match="no such folder"):
        selfhost.plan_load(str(tmp_path / "nope"), "auto", "cpu")
    with pytest.raises(ModelLoadError, match="not a hub id"):
        selfhost.plan_load("mistral", "auto", "cpu")


def test_placement_warning_reads_hf_device_map():
    model = Model()
    assert selfhost.placement_warning(model) is None
    model.hf_device_map = {"model.embed_tokens": 0, "model.layers.30": "cpu", "model.layers.31": "disk"}
    text = selfhost.placement_warning(model)
    assert "1 to the cpu and 1 to the disk" in text and "slower" in text and "nf4" in text


# ---------------------------------------------------------------- vLLM
def test_the_docs_quote_the_t4_vllm_commands_the_code_builds():
    from pathlib import Path

    ministral = memory.load_config("ministral-3-3b-instruct-2512")
    readme = (Path(__file__).resolve().parent.parent / "CONTRIBUTING.md").read_text()
    assert vllm.vllm_recipe(ministral, PROFILES["t4"]).command() in readme
    assert vllm.vllm_recipe(V03, PROFILES["t4"], "mistral-7b-awq").command() in readme
    assert "--quantization bitsandbytes" not in readme.replace("`--quantization bitsandbytes` or", "")
