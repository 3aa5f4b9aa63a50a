"""With a (fake) free-tier key, notebooks 00-03 against the La Plateforme twin: each with-key branch executes.

The twin (tests/conftest.py) is the course endpoint with `platform_tier="free"`: it refuses what a free-tier key
is refused (403 for mistral-large-latest), allows about one request a second (429 past it) and answers with the
offline model, labelled as the twin's. Parameters are small: each branch must run, not be measured at full size.
`test_the_with_key_branches_ran` counts, from what the notebooks recorded, the branches that only run with a key.
"""

from __future__ import annotations

import pytest
from conftest import TWIN_LABEL, executed_output

pytestmark = pytest.mark.notebook

# notebook -> the recorded metrics only its with-key branches set (None, or absent, without a key)
WITH_KEY = {
    "00_setup": ["models_callable"],
    "01_api_quickstart": ["client_server"],
    "02_prompting_conversations": ["conversations_api"],
    "03_model_selection": ["reasoning_effort", "skipped_tiers"],
}
RAN: dict[str, dict] = {}


def test_00_lists_what_a_free_key_may_call(with_key_runner, tmp_path):
    m = RAN["00_setup"] = with_key_runner("00_setup", LOCAL_MODEL="standin", DEVICE="cpu")
    assert m["backend"] == "mistral" and m["key_found"] and m["backend_answers"]
    assert "mistral-small-latest" in m["models_callable"] and "mistral-embed" in m["models_callable"]
    assert "mistral-large-latest" not in m["models_callable"]
    assert executed_output(tmp_path, "00_setup").count("La Plateforme twin (free tier)") >= 2


def test_01_builds_its_client_with_server_url(with_key_runner, free_tier_twin):
    m = RAN["01_api_quickstart"] = with_key_runner("01_api_quickstart", MAX_TOKENS=8)
    assert m["client_server"] == free_tier_twin
    assert 1 <= m["completion_tokens"] <= 8 and m["cost_usd"] > 0


def test_02_keeps_a_conversation_on_the_server(with_key_runner):
    m = RAN["02_prompting_conversations"] = with_key_runner(
        "02_prompting_conversations", K_SHOTS=1, N_MESSAGES=1, TURNS=3, KEEP_TURNS=1, TURN_TOKENS=16, BUDGET_TOKENS=60,
        LABEL_TOKENS=3)
    conv = m["conversations_api"]
    assert conv["second_call_prompt_tokens"] > 0 and isinstance(conv["answer_names_ana"], bool)


def test_02a_measures_the_patterns_and_reads_logprobs_with_a_key(with_key_runner):
    """The prompt-pattern study (deep/02a) with a key: every pattern on the seven injected messages, logprobs served."""
    m = RAN["02a_prompt_patterns"] = with_key_runner(
        "deep/02a_prompt_patterns", K_SHOTS=1, N_MESSAGES=7, N_EXTRACT=1, LABEL_TOKENS=3, JSON_TOKENS=40, TOP_LOGPROBS=5)
    assert set(m["patterns"]) == {"zero-shot", "delimiters", "few-shot (k=1)", "json_schema"}
    for row in m["patterns"].values():  # N_MESSAGES=7 keeps exactly the seven injected messages
        assert row["messages"] == 7 and 0 <= row["accuracy"] <= 1 and row["prompt_tokens_per_message"] > 0
    assert m["patterns"]["few-shot (k=1)"]["prompt_tokens_per_message"] > m["patterns"]["delimiters"]["prompt_tokens_per_message"]
    assert all(row["messages"] == 1 for row in m["extraction"].values())
    assert set(m["injection"]) == {"zero-shot", "delimiters"} and m["injected_messages"] == 7
    assert m["logprob_classification"]["messages"] == 7  # logprobs with a key: the twin serves them


def test_03_skips_the_tier_a_free_key_may_not_call_and_says_so(with_key_runner, tmp_path):
    m = RAN["03_model_selection"] = with_key_runner("03_model_selection", MAX_TOKENS=16, REASONING_TOKENS=16)
    assert set(m["skipped_tiers"]) == {"mistral-large-latest"}
    assert "subscription tier" in m["skipped_tiers"]["mistral-large-latest"]
    assert m["tiers"] == ["mistral-small-latest", "mistral-medium-latest"] and set(m["results"]) == set(m["tiers"])
    assert m["strongest_tier"] == "mistral-medium-latest"  # the strongest tier this key could call
    out = executed_output(tmp_path, "03_model_selection")
    assert "skipped mistral-large-latest: 403" in out
    # 'none' answered; 'high' refused (the twin's model has no reasoning mode), and said so
    assert any("reasoning_effort='none'" in k for k in m["reasoning_effort"])
    assert "reasoning_effort='high' refused" in out


def test_the_with_key_branches_ran():
    """Counted from what the notebooks above recorded: a branch skipped leaves its metric None and fails here."""
    ran = {(nb, key) for nb, keys in WITH_KEY.items() for key in keys
           if RAN.get(nb, {}).get(key) not in (None, {}, [])}
    assert len(ran) == sum(map(len, WITH_KEY.values())) == 5, sorted(set(
        (nb, k) for nb, ks in WITH_KEY.items() for k in ks) - ran)
    for nb, m in RAN.items():  # every number says it came from the twin, never from La Plateforme
        assert TWIN_LABEL in m["measured_on"], (nb, m["measured_on"])
