"""The self-host notebooks (06–10) under the T4 twin: decided as on a Tesla T4 holding Mistral-7B-Instruct-v0.3,
computed on the CPU with SmolLM2, with every GPU load counted at the real model's footprint."""

from __future__ import annotations

import nbformat
import pytest
from conftest import EXPECTED_FIGURES, NOTEBOOKS

from helpers.course.gpu import PROFILES
from helpers.selfhost import bnb_support

pytestmark = pytest.mark.notebook
T4 = PROFILES["t4"].capacity_bytes
MISTRAL = "mistralai/Mistral-7B-Instruct-v0.3"  # 06 and 07: the memory story
MINISTRAL = "mistralai/Ministral-3-3B-Instruct-2512-BF16"  # 08-10: what the endpoint serves on a T4


def twin_report(m: dict, profile: str = "t4") -> dict:
    twin = m["gpu_twin"]
    assert twin["profile"] == profile and twin["capacity_bytes"] == PROFILES[profile].capacity_bytes
    assert 0 < twin["peak_bytes"] <= twin["capacity_bytes"], twin
    assert "predicted" in twin["kind"] and "twin" in m["measured_on"]
    assert twin["all_on_gpu0"], twin["placements"]  # accelerate's own device-map inference kept every load whole
    return twin


def test_06_on_t4_twin_fits_fp16_for_short_replies(notebook_runner):
    m = notebook_runner("06_selfhost_fp16", DEVICE="twin:t4", MAX_NEW_TOKENS=8)
    twin = twin_report(m)
    assert twin["loads"] == 1 and f"{MISTRAL} (fp16)" in twin["resident_at_peak"][0]  # no bf16 copy on a GPU
    assert twin["headroom_at_peak_bytes"] > 0 and m["model"] == "SmolLM2-135M-Instruct"


def test_07_on_t4_twin_holds_one_precision_at_a_time(notebook_runner, figures_drawn):
    ok, why = bnb_support("cpu")
    if not ok:
        pytest.skip(why)
    m = notebook_runner("07_quantization_int8", DEVICE="twin:t4", PRECISIONS=["nf4"], NEW_TOKENS=8)
    assert figures_drawn("07_quantization_int8") == EXPECTED_FIGURES["07_quantization_int8"]
    twin = twin_report(m)
    assert twin["loads"] == 2 and len(twin["resident_at_peak"]) == 1 and twin["resident_now"] == []
    assert set(m["precisions"]) == {"fp32", "nf4"}  # the baseline is always measured: SmolLM2's, on the CPU
    base, nf4 = m["precisions"]["fp32"], m["precisions"]["nf4"]
    assert base["top1_agreement"] == 1.0 and 0.5 < nf4["top1_agreement"] <= 1.0
    assert nf4["footprint_bytes"] < base["footprint_bytes"]
    for row in (base, nf4):
        assert abs(row["estimated_bytes"] - row["footprint_bytes"]) / row["footprint_bytes"] < 0.01
        assert row["tokens_per_s"] > 0 and row["perplexity"] > 1
    est = m["mistral7b_estimated_gb"]
    assert 14.4 <= est["fp16"] <= 14.6 and 7.4 <= est["int8"] <= 7.6 and 3.9 <= est["nf4"] <= 4.1


def test_08_on_t4_twin_picks_a_precision_that_leaves_room(notebook_runner):
    # K=2: another k than the default 3; two questions of 4 new tokens (this run is about the twin's decisions)
    m = notebook_runner("08_local_rag", DEVICE="twin:t4", K=2, N_QUESTIONS=2, MAX_NEW_TOKENS=4)
    assert m["k"] == 2 and m["n_questions"] == 2 and m["embed_model"].endswith("all-MiniLM-L6-v2")
    assert 0 <= m["hit_rate_at_1"] <= m["hit_rate_at_3"] <= m["hit_rate_at_5"] <= 1
    assert 0 < m["mrr"] <= 1 and m["hit_rate_at_5"] >= 0.5  # a real embedder on the course's handbook
    assert m["api"] is None  # no key in tests: the side-by-side is skipped
    assert m["verdicts"]["total"] == 1 + 2 and m["local_s_per_question_max"] > 0
    twin = twin_report(m)
    held = " ".join(twin["resident_at_peak"])
    assert f"{MINISTRAL} (fp16)" in held and "embedder" in held  # Ministral 3 3B fits a T4 in fp16 beside the embedder
    assert twin["headroom_at_peak_bytes"] > 2**30


def test_09_on_t4_twin_uses_the_endpoint_model(notebook_runner):
    m = notebook_runner("09_selfhost_tools_json", DEVICE="twin:t4", N_CASES=1)
    twin = twin_report(m)
    assert sum(MINISTRAL in r for r in twin["resident_at_peak"]) == 1  # one copy: the endpoint's


def test_10_on_t4_twin_prints_a_vllm_command_that_fits(notebook_runner):
    m = notebook_runner("10_serving_decision_matrix", DEVICE="twin:t4", CONCURRENCY=[1, 2], LOAD_REQUESTS=2,
                        LOAD_MAX_TOKENS=4)  # the twin's decisions are the subject, not the load
    twin_report(m)
    vllm = m["vllm"]
    assert vllm["gpu"] == "Tesla T4" and vllm["sequences"] >= 1  # the notebook asserts the recipe fits
    assert "--dtype half" in vllm["command"] and "--max-model-len" in vllm["command"]
    assert "--gpu-memory-utilization" in vllm["command"] and "bitsandbytes" not in vllm["command"]
    assert f"vllm serve {MINISTRAL} " in vllm["command"]  # the model the API serves as ministral-3b-latest, whole on a T4


def test_09_as_it_was_fails_on_the_t4_twin_with_the_ledgers_message(tmp_path):
    """09 before the fix: section 1 starts the endpoint (which loads the GPU model), section 2 loaded "the same model
    the endpoint serves" a second time. The twin refuses that second copy, as a T4 would run out of memory."""
    import papermill as pm

    nb = nbformat.read(NOTEBOOKS / "09_selfhost_tools_json.ipynb", as_version=4)
    setup = next(i for i, c in enumerate(nb.cells) if "client = get_client(cfg)" in c.source)
    nb.cells = nb.cells[:setup + 1] + [nbformat.v4.new_code_cell(
        'lm = selfhost.load_model(cfg, "auto")  # the same model the endpoint serves, in this process')]
    source = tmp_path / "09_as_it_was.ipynb"
    nbformat.write(nb, source)
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(source), str(tmp_path / "out.ipynb"), parameters={"DEVICE": "twin:t4"},
                            cwd=str(NOTEBOOKS), kernel_name="python3", progress_bar=False, execution_timeout=600)
    text = str(err.value)
    assert "GpuBudgetError" in text and f"{MINISTRAL} is already on the Tesla T4 twin" in text, text[-2000:]
    assert "the course endpoint" in text  # who holds it
