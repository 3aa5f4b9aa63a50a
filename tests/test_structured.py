"""helpers.course.evals.structured: finding JSON in a reply and scoring it against a schema and the expected values."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Literal

import pytest
from pydantic import BaseModel

from helpers.course.evals import structured


class Args(BaseModel):
    transaction_id: str


class Record(BaseModel):
    transaction_id: str
    amount: float
    status: Literal["Paid", "Pending"]


ARGS = {"retrieve_payment_status": Args, "retrieve_payment_date": Args}


def call(name, arguments):
    return SimpleNamespace(tool_calls=[SimpleNamespace(function=SimpleNamespace(name=name, arguments=arguments))],
                           content="")


def text(content):
    return SimpleNamespace(tool_calls=None, content=content)


@pytest.mark.parametrize("reply, value", [
    ('{"a": 1}', {"a": 1}),
    ('<tool_call>\n{"a": 2}\n</tool_call>', {"a": 2}),
    ('Sure! ```json\n{"a": 3}\n``` hope that helps', {"a": 3}),
])
def test_extract_json_finds_it_where_a_careful_client_would(reply, value):
    assert structured.extract_json(reply) == value


@pytest.mark.parametrize("reply", ["", "The status is paid.", "{not json}", None])
def test_extract_json_refuses_text_without_json(reply):
    with pytest.raises(ValueError, match="no JSON"):
        structured.extract_json(reply)


def test_a_right_tool_call_scores_on_every_count():
    out = structured.score_tool_reply(call("retrieve_payment_status", '{"transaction_id": "T1001"}'), ARGS,
                                      "retrieve_payment_status", {"transaction_id": "T1001"})
    assert out[1:] == (True, True, True, True)


def test_right_function_wrong_value_is_valid_but_not_right():
    out = structured.score_tool_reply(call("retrieve_payment_status", '{"transaction_id": "T1002"}'), ARGS,
                                      "retrieve_payment_status", {"transaction_id": "T1001"})
    assert out[1:] == (True, True, True, False)


def test_unknown_function_and_bad_arguments_are_not_schema_valid():
    unknown = structured.score_tool_reply(call("get_weather", '{"city": "Paris"}'), ARGS, "retrieve_payment_date",
                                          {"transaction_id": "T1001"})
    assert unknown[1:] == (True, False, False, False)
    missing = structured.score_tool_reply(call("retrieve_payment_date", '{"id": "T1001"}'), ARGS,
                                          "retrieve_payment_date", {"transaction_id": "T1001"})
    assert missing[1:] == (True, False, True, False)


def test_prompt_only_text_is_scored_from_its_json():
    tagged = text('<tool_call>{"name": "retrieve_payment_date", "arguments": {"transaction_id": "T1004"}}</tool_call>')
    assert structured.score_tool_reply(tagged, ARGS, "retrieve_payment_date", {"transaction_id": "T1004"})[1:] == \
        (True, True, True, True)
    prose = text("The status of a transaction is 0x0000.")
    assert structured.score_tool_reply(prose, ARGS, "retrieve_payment_date", {})[1:] == (False, False, False, False)
    not_a_call = text('{"status": "Paid"}')
    assert structured.score_tool_reply(not_a_call, ARGS, "retrieve_payment_date", {})[1:] == (True, False, False, False)


def test_json_extraction_scores():
    expected = {"transaction_id": "T1001", "amount": 125.5, "status": "Paid"}
    assert structured.score_json_reply('{"transaction_id": "T1001", "amount": 125.50, "status": "Paid"}', Record,
                                       expected) == (True, True, True)
    assert structured.score_json_reply('{"transaction_id": "T1001", "amount": 12.5, "status": "Paid"}', Record,
                                       expected) == (True, True, False)
    assert structured.score_json_reply('{"transaction_id": "T1001", "status": "Lost"}', Record, expected) == \
        (True, False, False)
    assert structured.score_json_reply("Paid, 125.50", Record, expected) == (False, False, False)


def test_rates_summarise_a_group_and_refuse_an_empty_one():
    rows = [structured.Scored("tool call", "constrained", "q", "o", True, True, True, True, 10, 1.0),
            structured.Scored("tool call", "constrained", "q", "o", True, True, False, False, 20, 3.0)]
    got = structured.rates(rows)
    assert got["n"] == 2 and got["schema_valid_rate"] == 1.0 and got["right_function_rate"] == 0.5
    assert got["mean_completion_tokens"] == 15 and got["latency_p50_s"] == 1.0
    json_rows = [structured.Scored("JSON extraction", "prompt-only", "q", "o", False, False, None, False, 5, 1.0)]
    assert structured.rates(json_rows)["right_function_rate"] is None
    with pytest.raises(ValueError):
        structured.rates([])


def test_verdict_rules_for_calls_records_and_tool_answers():
    from helpers.course.evals.structured import call_is, free_vs_constrained, record_rule, schema_valid_share
    from helpers.course.verdicts import judge

    rule = call_is("retrieve_payment_status", transaction_id="T1001")
    assert judge('{"name": "retrieve_payment_status", "arguments": {"transaction_id": "T1001"}}', rule).kind == "right"
    wrong = judge('<tool_call>{"name": "retrieve_payment_status", "arguments": {"transaction_id": "1001"}}</tool_call>',
                  rule)
    assert wrong.kind == "wrong" and "1001" in wrong.why
    assert judge("The status is Paid.", rule).kind == "wrong"  # no JSON call at all

    class Rec(BaseModel):
        transaction_id: str
        amount: float

    good = judge('{"transaction_id": "T1001", "amount": 125.5}', record_rule({"transaction_id": "T1001"}, Rec))
    bad = judge('{"transaction_id": "1001", "amount": 125.5}', record_rule({"transaction_id": "T1001"}, Rec))
    assert good.kind == "right" and bad.kind == "wrong" and "schema-valid, wrong" in bad.why
    rows = [{"mode": "free", "reply": "not json"}, {"mode": "constrained", "reply": '{"transaction_id": "x", "amount": 1}'}]
    assert schema_valid_share(rows, Rec) == {"constrained": 1.0, "free": 0.0}

    assert "transaction_id '1001' (not 'T1001')" in bad.why  # the wrong field, named

    class Pay(BaseModel):
        transaction_id: str
        status: str

    want = {"transaction_id": "T1", "status": "Paid"}
    cases = [("free", "The schema is {", "cut"), ("free", "Sure!", "stop"),
             ("constrained", '{"transaction_id": "1", "status": "Paid"}', "stop"),
             ("constrained", '{"transaction_id": "T1", "status": "Paid"}', "stop")]
    rows = [{"mode": m, "reply": r, "expected": want,
             "verdict": judge(r, record_rule(want, Pay), finish_reason="length" if f == "cut" else "stop")}
            for m, r, f in cases]
    said = free_vs_constrained(rows, Pay)
    assert "free: 0 of 2 schema-valid, 0 right; cut off at max_tokens: 1; not JSON: 1" in said, said
    assert "constrained: 2 of 2 schema-valid, 1 right; wrong transaction_id ('1', not 'T1'): 1" in said, said
    assert "not the values: 1 of 2 constrained records" in said, said


def test_device_name_names_a_twin():
    from helpers.course.gpu import device_name

    assert device_name("twin:t4").endswith("(Tesla T4 twin)") and "twin" not in device_name("cpu")
