"""Notebooks 06–08 run end to end with non-default parameters (papermill) and record what they measured."""

from __future__ import annotations

import pytest
from conftest import EXPECTED_FIGURES

from helpers.selfhost import bnb_support

pytestmark = pytest.mark.notebook


def test_06_fp16_on_cpu(notebook_runner, figures_drawn):
    m = notebook_runner("06_selfhost_fp16", LOCAL_MODEL="standin", DEVICE="cpu", PRECISION="fp16", MAX_NEW_TOKENS=8)
    assert figures_drawn("06_selfhost_fp16") == EXPECTED_FIGURES["06_selfhost_fp16"]
    assert m["device"] == "cpu" and m["dtype"] == "fp16"
    assert m["footprint_bytes"] > 0 and abs(m["estimated_bytes"] - m["footprint_bytes"]) / m["footprint_bytes"] < 0.01
    assert m["tokens_per_s"] > 0
    assert 14.4 <= m["mistral7b_fp16_estimated_gb"] <= 14.6
    assert "CPU" in m["measured_on"] and "stand-in" in m["measured_on"]


def test_07_only_nf4(notebook_runner, figures_drawn):
    ok, why = bnb_support("cpu")
    if not ok:
        pytest.skip(why)
    m = notebook_runner("07_quantization_int8", LOCAL_MODEL="standin", DEVICE="cpu", PRECISIONS=["nf4"], NEW_TOKENS=8)
    assert figures_drawn("07_quantization_int8") == EXPECTED_FIGURES["07_quantization_int8"]
    assert set(m["precisions"]) == {"fp32", "nf4"}  # the baseline is always measured: it is the reference
    base, nf4 = m["precisions"]["fp32"], m["precisions"]["nf4"]
    assert base["top1_agreement"] == 1.0 and 0.5 < nf4["top1_agreement"] <= 1.0
    assert nf4["footprint_bytes"] < base["footprint_bytes"]
    for row in (base, nf4):
        assert abs(row["estimated_bytes"] - row["footprint_bytes"]) / row["footprint_bytes"] < 0.01
        assert row["tokens_per_s"] > 0 and row["perplexity"] > 1
    est = m["mistral7b_estimated_gb"]
    assert 14.4 <= est["fp16"] <= 14.6 and 7.4 <= est["int8"] <= 7.6 and 3.9 <= est["nf4"] <= 4.1
    assert est["nf4"] < est["int8"] < est["fp16"]


def test_08_with_k5(notebook_runner, figures_drawn):
    m = notebook_runner("08_local_rag", LOCAL_MODEL="standin", DEVICE="cpu", K=5, N_QUERIES=20, MAX_NEW_TOKENS=4,
                        RETRIEVAL="bm25", ANSWER_CHARS=12)
    assert figures_drawn("08_local_rag") == EXPECTED_FIGURES["08_local_rag"]
    assert m["k"] == 5 and m["n_queries"] == 20
    assert m["embed_model"].endswith("all-MiniLM-L6-v2")
    assert 0 <= m["hit_rate_at_1"] <= m["hit_rate_at_3"] <= m["hit_rate_at_5"] <= 1
    assert 0 < m["mrr"] <= 1 and m["hit_rate_at_5"] >= 0.5  # a real embedder on the course's handbook
    for stage in ("embed_ms", "search_ms", "generate_ms"):
        assert 0 <= m[f"{stage}_p50"] <= m[f"{stage}_p95"]
    assert "api" not in m  # no key in tests: the side-by-side is skipped
    assert m["retrieval"] == "bm25" and m["hit_rate_at_1"] == m["retrievers"]["bm25"]["hit_rate_at_1"]
    assert set(m["retrievers"]) == {"dense", "bm25", "hybrid"}
    # xgrammar on generate: even random weights cite only retrieved chunks
    assert m["answers_citing_retrieved_chunk"] == 1.0 and m["answers_checked"] == 20 and m["answer_chars"] == 12
    assert m["verdicts"]["total"] == 2 * 20 + 2 and 0 <= m["prompt_only"]["answers_citing_retrieved_chunk"] <= 1
