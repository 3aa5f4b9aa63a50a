"""helpers.catalog: the dated price table, cost arithmetic, answer checkers and escalation."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from mistralai.client.models import AssistantMessage, ChatCompletionChoice, ChatCompletionResponse, UsageInfo

from helpers import catalog
from helpers.catalog import Attempt, UnknownModelError, cost_usd, escalate, escalation_ladder
from helpers.course.evals import selection
from helpers.settings import data_path

SMALL, MEDIUM, LARGE = catalog.DEFAULT_TIERS


def response(text: str, prompt: int, completion: int, model: str = SMALL) -> ChatCompletionResponse:
    return ChatCompletionResponse(
        id="cmpl-1", object="chat.completion", model=model, created=0,
        usage=UsageInfo(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion),
        choices=[ChatCompletionChoice(index=0, finish_reason="stop",
                                      message=AssistantMessage(role="assistant", content=text))],
    )


class FakeChat:
    def __init__(self, replies: dict[str, str]) -> None:
        self.replies, self.calls = replies, []

    def complete(self, *, model, messages, **kwargs):
        self.calls.append(model)
        return response(self.replies[model], 1000, 100, model)


class FakeClient:
    def __init__(self, replies):
        self.chat = FakeChat(replies)


def test_price_table_is_dated_and_has_the_published_prices():
    table = catalog.price_table()
    assert set(catalog.DEFAULT_TIERS) <= set(table.index)
    assert (table.loc[SMALL, "input_usd_per_1m"], table.loc[SMALL, "output_usd_per_1m"]) == (0.15, 0.60)
    assert (table.loc[MEDIUM, "input_usd_per_1m"], table.loc[MEDIUM, "output_usd_per_1m"]) == (1.50, 7.50)
    assert (table.loc[LARGE, "input_usd_per_1m"], table.loc[LARGE, "output_usd_per_1m"]) == (0.50, 1.50)
    assert table["prices_as_of"].str.match(r"\d{4}-\d{2}-\d{2}$").all()
    assert table["source"].str.len().gt(10).all()


def test_price_table_has_the_ministral_3_aliases_dated_ids_and_retirements():
    table = catalog.price_table()
    # Mistral's docs (platform-docs-public, 2026-08-21): Ministral 3 at 0.10 / 0.15 / 0.20 in and out, 256k context
    for alias, price, dated in (("ministral-3b-latest", 0.10, "ministral-3b-2512"),
                                ("ministral-8b-latest", 0.15, "ministral-8b-2512"),
                                ("ministral-14b-latest", 0.20, "ministral-14b-2512")):
        row = table.loc[alias]
        assert (row.input_usd_per_1m, row.output_usd_per_1m, row.dated_id) == (price, price, dated)
        assert row.context_window == 256_000 and catalog.tier(alias).retirement_date is None
    # every alias names the dated id it points to, and that id has its own row at the same prices
    for alias in ("mistral-small-latest", "mistral-medium-latest", "mistral-large-latest"):
        pinned = catalog.tier(catalog.tier(alias).dated_id)
        assert pinned.alias != alias and pinned.alias == pinned.dated_id
        assert (pinned.input_usd_per_1m, pinned.output_usd_per_1m) == (table.loc[alias, "input_usd_per_1m"],
                                                                       table.loc[alias, "output_usd_per_1m"])
    assert catalog.tier("mistral-small-latest").dated_id == "mistral-small-2603"
    # retired ids carry their date and are not offered as tiers (tier_rank 0)
    retired = table[table.retirement_date.notna()]
    assert set(retired.index) >= {"mistral-small-2506", "mistral-medium-2508", "magistral-medium-2509"}
    assert (retired.tier_rank == 0).all() and retired.retirement_date.str.match(r"\d{4}-\d{2}-\d{2}$").all()
    assert table.loc["mistral-medium-2508", "retirement_date"] == "2026-08-31"
    # cached prompt tokens at 10% of the input price wherever a cached price is listed
    cached = table[table.cached_input_usd_per_1m.notna()]
    assert len(cached) >= 9
    assert (cached.cached_input_usd_per_1m.astype(float).round(6) ==
            (cached.input_usd_per_1m * 0.1).round(6)).all()


def test_cached_tokens_read_where_la_plateforme_reports_them_and_are_billed_at_10_percent():
    # the docs' example (prompt-caching.md): 1,013 prompt tokens, 1,008 cached, 30 completion, on large-latest
    usage = UsageInfo.model_validate({"prompt_tokens": 1013, "completion_tokens": 30, "total_tokens": 1043,
                                      "prompt_tokens_details": {"cached_tokens": 1008}})
    assert catalog.cached_tokens(usage) == 1008
    assert catalog.cached_tokens({"prompt_tokens_details": {"cached_tokens": 64}}) == 64
    assert catalog.cached_tokens(UsageInfo(prompt_tokens=3)) is None and catalog.cached_tokens(None) is None
    assert cost_usd(LARGE, usage) == pytest.approx((5 * 0.50 + 1008 * 0.05 + 30 * 1.50) / 1e6)
    assert cost_usd(LARGE, usage, cached=0) == pytest.approx((1013 * 0.50 + 30 * 1.50) / 1e6)
    with pytest.raises(ValueError, match="cannot exceed"):
        cost_usd(LARGE, prompt_tokens=10, cached=11)


def test_cost_arithmetic():
    # 1M in + 1M out on small = 0.15 + 0.60
    assert cost_usd(SMALL, prompt_tokens=1_000_000, completion_tokens=1_000_000) == pytest.approx(0.75)
    # 2,000 in + 500 out on large = 0.001 + 0.00075
    assert cost_usd(LARGE, {"prompt_tokens": 2000, "completion_tokens": 500}) == pytest.approx(0.00175)
    usage = UsageInfo(prompt_tokens=10_000, completion_tokens=1_000, total_tokens=11_000)
    assert cost_usd(MEDIUM, usage) == pytest.approx(0.015 + 0.0075)
    assert cost_usd("mistral-embed", prompt_tokens=1_000_000) == pytest.approx(0.10)
    assert cost_usd(SMALL, None) == 0.0


def test_unknown_model_and_negative_tokens_are_clear_errors():
    with pytest.raises(UnknownModelError, match="No price for model 'gpt-9'.*mistral-small-latest"):
        cost_usd("gpt-9", prompt_tokens=1)
    with pytest.raises(ValueError, match="negative"):
        cost_usd(SMALL, prompt_tokens=-1)


def test_cost_or_none_and_show_cost_for_a_model_without_a_price():
    assert catalog.cost_or_none("open-mistral-7b", prompt_tokens=100, completion_tokens=10) is None
    assert catalog.cost_or_none(SMALL, prompt_tokens=1_000_000) == pytest.approx(0.15)
    assert catalog.show_cost(None) == "n/a (not in the price table)"
    assert catalog.show_cost(0.0000123) == "$0.00001230"
    assert catalog.show_cost(0.5, digits=2) == "$0.50"


def test_ladder_drops_a_tier_that_costs_more_than_a_stronger_one():
    assert catalog.by_price(catalog.DEFAULT_TIERS) == [SMALL, LARGE, MEDIUM]
    assert escalation_ladder(catalog.DEFAULT_TIERS) == [SMALL, LARGE]  # medium now costs more than large
    assert escalation_ladder([MEDIUM, SMALL]) == [SMALL, MEDIUM]


def test_escalation_stops_at_the_first_pass():
    tried = []

    def attempt(model):
        tried.append(model)
        return Attempt(model, correct=(model == SMALL), cost_usd=0.001, latency_s=0.1)

    result = escalate(attempt, catalog.DEFAULT_TIERS)
    assert tried == [SMALL] and result.solved_by == SMALL and result.cost_usd == pytest.approx(0.001)


def test_escalation_climbs_on_failure_and_reports_total_cost():
    costs = {SMALL: 0.001, LARGE: 0.004, MEDIUM: 0.02}
    result = escalate(lambda m: Attempt(m, correct=False, cost_usd=costs[m], latency_s=0.0), catalog.DEFAULT_TIERS)
    assert [a.model for a in result.attempts] == [SMALL, LARGE]
    assert result.solved_by is None and result.cost_usd == pytest.approx(0.005)


def test_numbers_in_text():
    assert selection.numbers_in("T1001 paid 1,125.50 on 2021-10-16; 11 days") == [1125.5, 2021, 10, 16, 11]
    assert selection.numbers_in("no digits") == []


@pytest.fixture
def payments():
    return pd.read_csv(data_path("payments.csv"))


def test_shipped_payments_table(payments):
    assert list(payments.columns) == ["transaction_id", "customer_id", "payment_amount", "payment_date",
                                      "payment_status"]
    assert len(payments) == 12 and payments["transaction_id"].iloc[0] == "T1001"
    assert payments["transaction_id"].is_unique


def test_closest_payments_ground_truth(payments):
    truth = selection.closest_payments(payments)
    assert truth == {"ids": ("T1001", "T1012"), "amounts": (125.5, 128.95), "gap": 3.45, "days_apart": 11}


def test_closest_answer_checker(payments):
    truth = selection.closest_payments(payments)
    amounts = payments["payment_amount"].tolist()
    ok = "The closest amounts are 125.50 (T1001) and 128.95 (T1012); they were paid 11 days apart."
    assert selection.check_closest_answer(ok, truth, amounts)
    assert not selection.check_closest_answer(ok.replace("11 days", "10 days"), truth, amounts)
    assert not selection.check_closest_answer("120.00 and 125.50, 2 days apart", truth, amounts)
    echo = payments.to_csv(index=False) + " 11"
    assert not selection.check_closest_answer(echo, truth, amounts), "echoing the table is not an answer"


def test_json_fields_match():
    want = {"customer_id": "C042", "amount": 49.9}
    assert selection.json_fields_match(json.dumps({"customer_id": "c042", "amount": "49.90", "x": 1}), want)
    assert not selection.json_fields_match(json.dumps({"customer_id": "C042", "amount": 49.0}), want)
    assert not selection.json_fields_match("not json", want)
    assert not selection.json_fields_match("[1, 2]", want)


def test_tasks_and_run_task_with_a_fake_client(payments):
    tasks = {t.name: t for t in selection.model_selection_tasks(payments)}
    assert list(tasks) == ["classification", "extraction", "composition", "reasoning"]
    assert tasks["extraction"].options["response_format"] == {"type": "json_object"}
    client = FakeClient({SMALL: "fraud", LARGE: "Payments."})
    a = selection.run_task(client, tasks["classification"], SMALL)
    b = selection.run_task(client, tasks["classification"], LARGE)
    assert a.correct and not b.correct
    assert a.cost_usd == pytest.approx(cost_usd(SMALL, prompt_tokens=1000, completion_tokens=100))
    reply = catalog.complete(client, LARGE, [{"role": "user", "content": "hi"}])
    assert (reply.prompt_tokens, reply.completion_tokens, reply.finish_reason) == (1000, 100, "stop")
    assert reply.latency_s >= 0 and reply.cost_usd == pytest.approx(0.00065)


def test_complete_reads_the_answer_of_a_reasoning_model_not_its_chunks():
    from mistralai.client.models import TextChunk, ThinkChunk

    class ThinkingChat:
        def complete(self, *, model, messages, **kwargs):
            r = response("", 10, 5, model)
            r.choices[0].message.content = [ThinkChunk(thinking=[TextChunk(text="Let me add them.")]),
                                            TextChunk(text="2 + 2 = 4")]
            return r

    client = type("C", (), {"chat": ThinkingChat()})()
    reply = catalog.complete(client, SMALL, [{"role": "user", "content": "2 + 2?"}])
    assert reply.text == "2 + 2 = 4"  # not str(list), not the reasoning
