"""Notebooks 06–08 (and 08's deep dive) run end to end with non-default parameters (papermill) and record what they measured."""

from __future__ import annotations

import pytest
from conftest import EXPECTED_FIGURES

pytestmark = pytest.mark.notebook


def test_06_fp16_on_cpu(notebook_runner, figures_drawn):
    m = notebook_runner("06_selfhost_fp16", LOCAL_MODEL="standin", DEVICE="cpu", PRECISION="fp16", MAX_NEW_TOKENS=8)
    assert figures_drawn("06_selfhost_fp16") == EXPECTED_FIGURES["06_selfhost_fp16"]
    assert m["device"] == "cpu" and m["dtype"] == "fp16"
    assert m["footprint_bytes"] > 0 and abs(m["estimated_bytes"] - m["footprint_bytes"]) / m["footprint_bytes"] < 0.01
    assert m["tokens_per_s"] > 0
    assert 14.4 <= m["mistral7b_fp16_estimated_gb"] <= 14.6
    assert "CPU" in m["measured_on"] and "stand-in" in m["measured_on"]


# 07 (nf4 only) and 08 (K=5, BM25, short JSON answers) run under the T4 twin instead: tests/test_nb_twin.py asserts
# what the CPU variants did, and the GPU ledger besides


def test_08a_batched_local_rag_measured(notebook_runner, figures_drawn):
    # 08's deep dive: ten questions in two batches of five, 4 new tokens, BM25 retrieval, JSON answers of 12 characters
    m = notebook_runner("deep/08a_local_rag_measured", DEVICE="cpu", K=2, N_QUERIES=10, GEN_BATCH=5, MAX_NEW_TOKENS=4,
                        RETRIEVAL="bm25", ANSWER_CHARS=12)
    assert figures_drawn("08a_local_rag_measured") == EXPECTED_FIGURES["08a_local_rag_measured"]
    assert m["k"] == 2 and m["n_queries"] == 10 and m["gen_batch"] == 5 and m["embed_model"].endswith("all-MiniLM-L6-v2")
    for stage in ("embed_ms", "search_ms", "generate_ms"):
        assert 0 <= m[f"{stage}_p50"] <= m[f"{stage}_p95"]
    assert m["retrieval"] == "bm25" and m["hit_rate_at_1"] == m["retrievers"]["bm25"]["hit_rate_at_1"]
    assert set(m["retrievers"]) == {"dense", "bm25", "hybrid"}
    # xgrammar on generate: the grammar lets the model cite nothing but the retrieved chunks (or none, abstaining)
    assert m["answers_with_no_invented_source"] == 1.0 and m["answers_checked"] == 10 and m["answer_chars"] == 12
    u = m["unanswerable_questions"]
    assert m["verdicts"]["total"] == 2 * 10 + 2 + 2 * u and 0 <= m["prompt_only"]["answers_citing_retrieved_chunk"] <= 1
    assert m["cited_answers_repeating_a_source"] == 0 and 0 <= m["abstention_rate"] <= 1
    assert m["generate_s"]["json"] > 0 and m["generate_s"]["prompt_only"] > 0  # seconds, whole batches
