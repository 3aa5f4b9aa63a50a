"""Notebooks 01-05 end to end with papermill and NON-default parameters, offline (local endpoint + stand-in)."""

from __future__ import annotations

import math

import pytest
from conftest import EXPECTED_FIGURES

from helpers.catalog import cost_usd

pytestmark = pytest.mark.notebook


def test_01_with_another_chat_model(notebook_runner):
    m = notebook_runner("01_api_quickstart", CHAT_MODEL="mistral-large-latest", MAX_TOKENS=16, BACKEND="local")
    assert m["backend"] == "local" and m["model"] == "mistral-large-latest"
    assert m["prompt_tokens"] > 0 and 1 <= m["completion_tokens"] <= 16
    assert m["cost_usd"] == pytest.approx(cost_usd("mistral-large-latest", prompt_tokens=m["prompt_tokens"],
                                                   completion_tokens=m["completion_tokens"]), abs=1e-9)
    assert m["error_statuses"] == {"bad key": 401, "rate limit": 429, "invalid value": 422, "unknown model": 400}


def test_02_with_another_k_model_and_budget(notebook_runner, figures_drawn):
    m = notebook_runner("02_prompting_conversations", BACKEND="local", CHAT_MODEL="mistral-large-latest", K_SHOTS=1,
                        N_MESSAGES=2, TURNS=3, KEEP_TURNS=1, BUDGET_TOKENS=90, LABEL_TOKENS=3, TURN_TOKENS=24)
    assert figures_drawn("02_prompting_conversations") == EXPECTED_FIGURES["02_prompting_conversations"]
    assert m["model"] == "mistral-large-latest" and m["k_shots"] == 1 and m["budget_tokens"] == 90
    tokens = m["mean_prompt_tokens_per_pattern"]  # the examples are paid for on every call
    assert set(tokens) == {"zero-shot", "few-shot (k=1)"} and tokens["few-shot (k=1)"] > tokens["zero-shot"]
    turns = m["tokens_per_turn"]
    assert len(turns) == 3 and all(b > a for a, b in zip(turns, turns[1:], strict=False))
    assert all(c > 0 for c in m["cached_tokens_per_turn"][1:])  # the course endpoint reuses the previous turn's prompt
    assert m["remedies"]["whole history"]["fact sent"] and not m["remedies"]["last 1 turn"]["fact sent"]
    assert m["remedies"]["last 1 turn"]["prompt_tokens"] < m["remedies"]["whole history"]["prompt_tokens"]
    assert m["conversations_api"] is None and m["verdicts"]["total"] == 2 * 2 + 2 + 3 + 2  # labels, prefix (one per message), turns, remedies


def test_03_with_another_tier_list(notebook_runner, figures_drawn):
    tiers = ["mistral-small-latest", "mistral-large-latest"]
    m = notebook_runner("03_model_selection", MODELS=tiers, MAX_TOKENS=40, BACKEND="local")
    # issue 33: offline one model serves every tier, so 03 draws no chart whose reading would invert the lesson
    assert figures_drawn("03_model_selection") == EXPECTED_FIGURES["03_model_selection"] == 0
    assert set(m["results"]) == set(tiers) and m["strongest_tier"] == "mistral-large-latest"
    for model in tiers:
        assert set(m["results"][model]) == {"classification", "extraction", "composition", "reasoning"}
        for cell in m["results"][model].values():  # offline only the first tier is asked: the others are priced copies
            assert isinstance(cell["correct"], bool) and cell["cost_usd"] > 0
            assert (cell["latency_s"] > 0) if model == tiers[0] else cell["latency_s"] is None
    correct = [c["correct"] for r in m["results"].values() for c in r.values()]
    assert m["share_correct"] == pytest.approx(sum(correct) / len(correct), abs=1e-4)
    # the endpoint refuses reasoning_effort='high' with a 400 that names the field, and nothing was measured
    assert m["reasoning_effort_local"].startswith("400") and "reasoning_effort" in m["reasoning_effort_local"]
    assert m["reasoning_effort"] is None and m["verdicts"]["total"] == 1 + len(correct) // len(tiers)


def test_03a_prices_escalation_and_always_large_on_the_same_answers(notebook_runner):
    tiers = ["mistral-small-latest", "mistral-large-latest"]
    m = notebook_runner("deep/03a_escalation", MODELS=tiers, MAX_TOKENS=40, BACKEND="local")
    assert m["ladder"] == tiers and m["always_large_model"] == "mistral-large-latest"
    small, large = m["cheapest_cost_usd"], m["always_large_cost_usd"]
    # escalation pays at least the small model on every task, at most small + large on every task
    assert 0 < small - 1e-9 <= m["escalation_cost_usd"] <= small + large + 1e-9
    # one rung per task, plus the large one where the small answer failed
    assert m["escalation_rungs_tried"] == 4 + round(4 * (1 - m["cheapest_pass_share"]))
    assert m["break_even_pass_share"] == pytest.approx(small / large, abs=1e-4)


def test_04_with_tool_choice_none(notebook_runner):
    m = notebook_runner("04_function_calling", TOOL_CHOICE="none", MAX_TURNS=2, BACKEND="local")
    assert m["tool_choice"] == "none"
    assert m["tool_calls"] == 0 and m["turns"] == 1 and m["errors_fed_back"] == 0 and m["stopped"] == "answered"


def test_05a_with_fixed_chunks_of_another_size(notebook_runner, figures_drawn, tmp_path):
    # 05's deep dive with another chunking, metric and k: 4 answers check the answer path end to end
    m = notebook_runner("deep/05a_retrieval_engineering", CHUNKING="fixed", CHUNK_SIZE=384, METRIC="l2", TOP_K=2,
                        BACKEND="local", CACHE_DIR=str(tmp_path / "rag"), N_ANSWERS=4)
    assert figures_drawn("05a_retrieval_engineering") == EXPECTED_FIGURES["05a_retrieval_engineering"]
    from helpers import rag

    expected_chunks = len(rag.chunk_fixed(rag.load_document(), 384))
    assert (m["chunking"], m["chunk_size"], m["metric"], m["chunks"]) == ("fixed", 384, "l2", expected_chunks)
    assert m["embedding_requests"] == math.ceil(expected_chunks / 512) == 1  # a fresh cache: one batched request
    assert m["embedding_cache_hits_first_pass"] == 0
    assert m["embedding_requests_on_rerun"] == 0 and m["embedding_cache_hits_on_rerun"] == expected_chunks
    assert 0 <= m["hit_rate_at_1"] <= m["hit_rate_at_3"] <= m["hit_rate_at_5"] <= 1
    assert m["hit_rate_at_5"] >= 0.6, "all-MiniLM-L6-v2 retrieval should be far better than chance"
    assert m["hit_rate_at_1"] <= m["mrr"] <= 1
    assert "all-MiniLM-L6-v2" in m["embedder"]
    assert set(m["retrievers"]) == {"dense", "bm25", "hybrid"} and m["retrieval"] == "hybrid" and m["rrf_k"] == 60
    for r in m["retrievers"].values():
        assert 0 <= r["hit_rate_at_1"] <= r["hit_rate_at_3"] <= r["hit_rate_at_5"] <= 1 and r["hit_rate_at_1"] <= r["mrr"]
    assert m["hit_rate_at_1"] == m["retrievers"]["hybrid"]["hit_rate_at_1"]  # the recorded pipeline is the hybrid one
    assert m["rerank"].startswith("skipped")  # offline: no cross-encoder can load
    # constrained decoding on the local endpoint: every JSON answer cites a chunk it was given
    # (an answer may abstain with no source, so citing a retrieved chunk is measured, not guaranteed)
    assert m["answers_with_no_invented_source"] == 1.0 and m["answers_checked"] == 4
    assert 0 <= m["answers_citing_retrieved_chunk"] <= 1
    assert 0 <= m["answers_citing_answer_chunk"] <= 1 and 0 <= m["answers_right"] <= 1
    assert set(m["prompt_only"]) == {"answers_checked", "answers_citing_retrieved_chunk", "answers_citing_answer_chunk",
                                     "answers_right", "answers_repeating_an_id", "answers_with_no_invented_source",
                                     "answers_saying_unanswerable"}
    # 4 eval questions and each unanswerable one, both ways, plus the showcase answer
    u = m["unanswerable_questions"]
    assert u >= 3 and m["verdicts"]["total"] == 2 * 4 + 1 + 2 * u
    assert m["cited_completion_tokens_max"] <= m["cited_max_tokens"]
    assert 0 <= m["abstention_rate"] <= 1 and 0 <= m["abstention_rate_prompt_only"] <= 1
    assert m["cited_answers_repeating_a_source"] == 0  # the checking code keeps each cited id once
    assert 0 <= m["cited_replies_that_repeated_an_id"] <= 4
