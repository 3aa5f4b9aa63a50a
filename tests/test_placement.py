"""helpers.course.placement: transformers' own device-map inference on the meta-device model, given a T4's free memory."""

from __future__ import annotations

import pytest

from helpers.device import PROFILES, MiB
from helpers.memory import load_config

GiB = 2**30
# A T4 as torch reports it (14.56 GiB) less the CUDA context (~400 MiB): ≈14.17 GiB free before the first weight.
T4_FREE = PROFILES["t4"].capacity_bytes - 400 * MiB


@pytest.fixture(scope="module")
def mistral7b():
    return load_config("mistral-7b-instruct-v0.3")


@pytest.fixture(scope="module")
def ministral3b():
    return load_config("ministral-3-3b-instruct-2512")


def test_t4_free_memory_is_the_figure_the_issue_reproduced():
    assert 14.15 * GiB < T4_FREE < 14.18 * GiB


def test_plain_auto_spills_mistral7b_fp16_off_a_t4(mistral7b):
    from helpers.course.placement import accelerate_placement

    r = accelerate_placement(mistral7b, T4_FREE, "fp16")
    # accelerate keeps 90% of a single GPU's free memory for weights: 12.75 GiB < 13.50 GiB of fp16 weights
    assert r["off_gpu"] == ["lm_head", "model.layers.29", "model.layers.30", "model.layers.31", "model.norm",
                            "model.rotary_emb"]
    assert all(r["device_map"][name] == "cpu" for name in r["off_gpu"])
    assert r["device_map"]["model.layers.28"] == 0
    assert not r["all_on_gpu0"]
    assert 13.49 * GiB < r["model_bytes"] < 13.51 * GiB
    assert r["weights_fit_free"]  # the weights fit the free memory: only the 90% rule pushes them out


def test_explicit_max_memory_keeps_mistral7b_whole(mistral7b):
    from helpers.course.placement import accelerate_placement

    r = accelerate_placement(mistral7b, T4_FREE, "fp16", max_memory={0: T4_FREE})
    assert r["off_gpu"] == [] and r["all_on_gpu0"]
    assert set(r["device_map"].values()) == {0}


def test_device_map_on_gpu0_keeps_mistral7b_whole(mistral7b):
    from helpers.course.placement import accelerate_placement

    r = accelerate_placement(mistral7b, T4_FREE, "fp16", device_map={"": 0})
    assert r["device_map"] == {"": 0} and r["all_on_gpu0"] and r["weights_fit_free"]


def test_ministral3_3b_fp16_stays_whole_on_a_t4(ministral3b):
    from helpers.course.placement import accelerate_placement

    r = accelerate_placement(ministral3b, T4_FREE, "fp16")
    assert r["all_on_gpu0"], r["off_gpu"]
    assert r["model_bytes"] == 7_698_180_864  # 3,849,090,048 parameters × 2 bytes + 768 bytes of buffers (SOURCE.md)


def test_a_smaller_card_spills_ministral3_too(ministral3b):
    from helpers.course.placement import accelerate_placement

    r = accelerate_placement(ministral3b, 7 * GiB, "fp16")  # 90% of 7 GiB < 7.17 GiB of weights
    assert not r["all_on_gpu0"] and not r["weights_fit_free"]
    assert "lm_head" in r["off_gpu"] or any(n.startswith("model.language_model.layers.") for n in r["off_gpu"])


def test_the_probe_is_restored_after_the_call(mistral7b):
    from transformers.integrations import accelerate as hf_accelerate

    from helpers.course.placement import accelerate_placement

    before = hf_accelerate.accelerate_max_memory
    accelerate_placement(mistral7b, T4_FREE, "fp16")
    assert hf_accelerate.accelerate_max_memory is before


@pytest.mark.parametrize("free, dtype", [(0, "fp16"), (T4_FREE, "int3")])
def test_bad_arguments_say_what_to_pass(mistral7b, free, dtype):
    from helpers.course.placement import accelerate_placement

    with pytest.raises(ValueError, match="free_bytes|dtype"):
        accelerate_placement(mistral7b, free, dtype)


def test_the_twin_ledger_refuses_a_plain_auto_load_that_accelerate_would_spill_and_admits_the_explicit_map():
    from helpers.course.gpu import GpuBudgetError, Ledger
    from helpers.device import Ask

    v03 = load_config("mistral-7b-instruct-v0.3")
    ask = Ask("mistralai/Mistral-7B-Instruct-v0.3 (fp16)", "notebook", 13_500_000_000, 0)
    book = Ledger(PROFILES["t4"], twin=True)
    with pytest.raises(GpuBudgetError, match=r"model\.layers\.(29|30|31)|lm_head"):
        book.check_placement(v03, "fp16", "auto", ask)
    placed = book.check_placement(v03, "fp16", {"": 0}, ask)
    assert placed["all_on_gpu0"] and book.report()["all_on_gpu0"] and "all on GPU 0" in book.report()["placements"][0]


def test_a_load_planned_for_the_t4_twin_is_checked_by_accelerate_and_reported_all_on_gpu0():
    from helpers import selfhost
    from helpers.course import gpu

    gpu.reset_ledger()
    try:
        spec = selfhost.plan_load("mistralai/Mistral-7B-Instruct-v0.3", "nf4", "twin:t4", kv_tokens=512)
        assert spec.device_map is None  # what computes here is on the CPU; on the card the plan passes {"": 0}
        spec16 = selfhost.plan_load("mistralai/Mistral-7B-Instruct-v0.3", "fp16", "twin:t4", kv_tokens=512)
        assert spec16.target_precision == "fp16"
        assert gpu.current_ledger().report()["all_on_gpu0"] and gpu.current_ledger().report()["placements"]
    finally:
        gpu.reset_ledger()
