"""With a (fake) free-tier key, notebooks 04, 05, 08, 10 and deep dive 10a against the La Plateforme twin (see test_nb_platform_a)."""

from __future__ import annotations

import pytest
from conftest import TWIN_LABEL

pytestmark = pytest.mark.notebook

WITH_KEY = {
    "04_function_calling": ["backend"],
    "05_api_rag": ["backend"],
    "05a_retrieval_engineering": ["answer_concurrency"],
    "08_local_rag": ["api"],
    "10_serving_decision_matrix": ["api_p50_s"],
    "10a_conformance_and_rag_latency": ["api_conformance_failed", "rag_api"],
}
RAN: dict[str, dict] = {}


def test_04_runs_its_tool_loop_on_a_free_key(with_key_runner):
    m = RAN["04_function_calling"] = with_key_runner("04_function_calling", MAX_TURNS=2)
    assert m["backend"] == "mistral" and m["tool_calls"] >= 1


def test_05_runs_its_pipeline_on_a_free_key(with_key_runner, tmp_path):
    m = RAN["05_api_rag"] = with_key_runner("05_api_rag", N_ANSWERS=2, MAX_TOKENS=16, CHUNK_CHARS=384,
                                            CACHE_DIR=str(tmp_path / "rag"))
    assert m["backend"] == "mistral" and m["answers_checked"] == 2 and m["verdicts"]["total"] == 2 + 1
    assert m["dim"] == 384  # the twin serves MiniLM behind mistral-embed: the dimension is read, not assumed
    assert m["chunks"] > 64 and m["embedding_requests"] == -(-m["chunks"] // 64)  # 64 chunks a request
    assert 0 <= m["hit_rate_at_1"] <= m["hit_rate_at_3"] <= m["hit_rate_at_5"] <= 1 and m["hit_rate_at_5"] >= 0.6


def test_05a_answers_one_request_at_a_time(with_key_runner, tmp_path):
    m = RAN["05a_retrieval_engineering"] = with_key_runner(
        "deep/05a_retrieval_engineering", N_ANSWERS=2, MAX_TOKENS=16, RERANK=False, CACHE_DIR=str(tmp_path / "rag"))
    assert m["answer_concurrency"] == 1 and m["answers_checked"] == 2  # "auto" → 1 on La Plateforme


def test_08_puts_the_api_pipeline_beside_the_local_one(with_key_runner):
    # the local side on the stand-in (its answers are another test's subject); the API side is the twin's SmolLM2
    m = RAN["08_local_rag"] = with_key_runner("08_local_rag", DEVICE="cpu", LOCAL_MODEL="standin", K=2, N_QUESTIONS=2,
                                              MAX_NEW_TOKENS=4)
    assert m["api"]["model"] and 0 < m["api"]["mrr"] <= 1 and m["verdicts"]["total"] == 1 + 2 * 2


def test_10_measures_the_api_column(with_key_runner):
    # one client, then two; two requests of 2 tokens: each with-key branch runs, nothing is measured at full size
    m = RAN["10_serving_decision_matrix"] = with_key_runner("10_serving_decision_matrix", DEVICE="cpu",
                                                            CONCURRENCY=[1, 2], LOAD_REQUESTS=2, LOAD_MAX_TOKENS=2)
    assert m["api_p50_s"] > 0 and len(m["batching_gain"]) == 2


def test_10a_checks_the_api_conformance_and_times_its_rag(with_key_runner):
    # the full suite against the API twin; on the course endpoint only "chat" (its full suite runs keyless, in nbval)
    m = RAN["10a_conformance_and_rag_latency"] = with_key_runner("deep/10a_conformance_and_rag_latency", DEVICE="cpu",
                                                                 COURSE_CHECKS="chat", N_RAG=1, RAG_MAX_TOKENS=2)
    assert m["api"].startswith("measured: La Plateforme twin (free tier)") and m["rag_api"]["generate_ms_p50"] > 0
    # issue 30: the conformance suite, request rules included, passes against the endpoint in its twin mode too
    assert m["api_conformance_failed"] == [], m["api_conformance_failed"]


def test_the_with_key_branches_ran():
    """Counted from what the notebooks above recorded (04's only with-key difference is its backend)."""
    ran = {(nb, key) for nb, keys in WITH_KEY.items() for key in keys if RAN.get(nb, {}).get(key) not in (None, {})}
    assert len(ran) == sum(map(len, WITH_KEY.values())) == 7, sorted(
        {(nb, k) for nb, ks in WITH_KEY.items() for k in ks} - ran)
    assert RAN["04_function_calling"]["backend"] == "mistral"
    for nb in ("04_function_calling", "05_api_rag"):
        assert TWIN_LABEL in RAN[nb]["measured_on"], RAN[nb]["measured_on"]
