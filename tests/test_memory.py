"""helpers.memory: the estimate matches get_memory_footprint, and the Mistral-7B numbers match the published
parameter counts (params × bytes per precision) and the KV-cache formula."""

from __future__ import annotations

import pytest

from helpers import memory
from helpers.course.standin import standin_path
from helpers.selfhost import bnb_support, load_model, unload

V03 = "mistral-7b-instruct-v0.3"
V01 = "mistral-7b-instruct-v0.1"


def test_shipped_configs_have_the_official_parameter_counts():
    assert set(memory.shipped_configs()) >= {V03, V01}
    assert memory.count_parameters(V03).total == 7_248_023_552
    assert memory.count_parameters(V01).total == 7_241_732_096
    # bitsandbytes leaves lm_head alone by default, so it is not counted as quantizable
    assert memory.count_parameters(V03).skipped == ("lm_head",)


def test_mistral_7b_fp16_is_14_5_gb():
    gb = memory.weight_bytes(V03, "fp16") / memory.GB
    assert 14.4 <= gb <= 14.6, gb
    assert 13.4 <= memory.weight_bytes(V03, "fp16") / memory.GiB <= 13.6


def test_mistral_7b_int8_and_nf4_as_anchors_say():
    assert 7.4 <= memory.weight_bytes(V03, "int8") / memory.GB <= 7.6
    assert 3.9 <= memory.weight_bytes(V03, "nf4") / memory.GB <= 4.1
    with_constants = (memory.weight_bytes(V03, "nf4") + memory.quant_constants_bytes(V03, "nf4")) / memory.GB
    assert 4.1 <= with_constants <= 4.45


def test_kv_cache_is_128_kib_per_token_for_v03_fp16():
    assert memory.kv_bytes_per_token(V03, "fp16") == 128 * memory.KiB
    assert memory.kv_cache_bytes(V03, 4096) == 0.5 * memory.GiB
    assert memory.kv_cache_bytes(V03, 32768) == 4 * memory.GiB


def test_sliding_window_caps_the_v01_cache():
    assert memory.kv_cache_bytes(V01, 32768) == memory.kv_cache_bytes(V01, 4096)


def test_fits_on_a_t4_or_not():
    assert memory.fits(V03, "fp16", 4096, "T4").fits  # 13.5 + 0.5 + 0.5 GiB ≤ 14.56 GiB, barely
    assert not memory.fits(V03, "fp16", 8192, "T4").fits
    assert not memory.fits(V03, "fp32", 1024, "T4").fits
    big = memory.fits(V03, "nf4", 32768, "T4")
    assert big.fits and big.headroom_bytes > 5 * memory.GiB
    assert memory.fits(V03, "fp16", 4096, gpu=80.0).headroom_bytes > 60 * memory.GiB


def test_verdict_is_computed_from_the_margin():
    tight = memory.fits(V03, "fp16", 4096, "T4")
    assert tight.tight and 0 < tight.headroom_bytes < 0.1 * memory.GiB
    assert "fits by only 0.06 GiB" in tight.verdict() and "expect OOMs" in tight.verdict()
    assert "0.5 GiB allowance" in tight.verdict()
    short = memory.fits(V03, "fp16", 8192, "T4")
    assert not short.tight and "does not fit" in short.verdict() and "short" in short.verdict()
    roomy = memory.fits(V03, "nf4", 4096, "T4")
    assert not roomy.tight and "to spare" in roomy.verdict()
    # a bigger GPU changes the verdict: nothing is hard-coded
    assert "to spare" in memory.fits(V03, "fp16", 8192, gpu=40.0).verdict()
    assert memory.fits(V03, "fp16", 4096, "T4").as_row()["headroom GiB"] == round(tight.headroom_bytes / memory.GiB, 2)
    nf4 = memory.fits(V03, "nf4", 4096, "T4")  # the fit counts what the GPU holds: weights and their constants
    assert nf4.weights_bytes == memory.weight_bytes(V03, "nf4", rest_dtype="fp16") + memory.quant_constants_bytes(V03, "nf4")
    assert memory.quant_constants_bytes(V03, "nf4") > 0


def test_cuda_total_is_none_without_a_gpu():
    import torch

    total = memory.cuda_total_gib()
    assert (total is None) == (not torch.cuda.is_available())
    if total is not None:
        assert total > 1


def test_bad_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        memory.weight_bytes(V03, "int3")


def test_unknown_config_says_what_is_shipped():
    with pytest.raises(FileNotFoundError, match=V03):
        memory.load_config("mistral-9b")


def test_smaller_precision_chain():
    assert [memory.smaller_precision(p) for p in ("fp32", "fp16", "int8", "nf4")] == ["fp16", "int8", "nf4", None]


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16", "int8", "nf4"])
def test_estimate_matches_get_memory_footprint_of_the_standin(precision):
    if precision in memory.QUANTIZED:
        ok, why = bnb_support("cpu")
        if not ok:
            pytest.skip(why)
    lm = load_model("standin", precision, "cpu")
    try:
        measured = lm.model.get_memory_footprint()
        estimated = memory.weight_bytes(standin_path(), precision, rest_dtype=lm.compute_dtype)
        assert abs(estimated - measured) / measured < 0.01, (estimated, measured)
    finally:
        unload(lm)


def test_estimate_table_rows():
    rows = {r["precision"]: r for r in memory.estimate_table(V03)}
    assert rows["fp16"]["weights GB (estimated)"] == pytest.approx(14.5, abs=0.05)
    assert rows["int8"]["weights GB (estimated)"] < rows["fp16"]["weights GB (estimated)"] / 1.9


def test_human_shows_both_units():
    assert memory.human(2**30) == "1.07 GB (1.00 GiB)"


def test_unknown_gpu_and_kv_dtype_say_what_is_valid():
    with pytest.raises(ValueError, match=r"gpu='A100'.*T4.*GiB"):
        memory.fits(V03, "fp16", 4096, gpu="A100")
    with pytest.raises(ValueError, match=r"'fp8'.*fp32, fp16, bf16, int8"):
        memory.kv_bytes_per_token(V03, "fp8")
    with pytest.raises(ValueError, match="fp8"):
        memory.fits(V03, "fp16", 4096, kv_dtype="fp8")
    assert memory.kv_bytes_per_token(V03, "int8") == 64 * memory.KiB  # a quantized cache: half of fp16


def test_config_prefix_is_one_constant():
    from helpers import selfhost

    assert selfhost.CONFIG_PREFIX is memory.CONFIG_PREFIX
    prefixed = memory.load_config(memory.CONFIG_PREFIX + V03)
    assert prefixed.to_dict() == memory.load_config(V03).to_dict()
