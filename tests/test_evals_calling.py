"""Notebook 04's verdict rules (helpers/course/evals/calling.py) and 03's task verdicts (selection.py)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd

from helpers.catalog import Attempt
from helpers.course.evals import calling, selection
from helpers.settings import data_path


def test_a_date_is_passed_on_only_when_no_other_day_month_or_date_is_said():
    rule = calling.passes_on({"transaction_id": "T1010", "date": "2021-10-14"})
    assert rule("T1010 was paid on 2021-10-14.")[0]
    assert rule("T1010 was paid on 2021-10-14, on October 14th.")[0]
    ok, how = rule('The transaction "T1010" was paid on the 20th day of 2021-10-14.')  # the garbled one newcomers saw
    assert not ok and "20th" in how
    assert not rule("Paid on 2021-10-14 or 2021-10-15.")[0]
    assert not rule("Paid in September: 2021-10-14.")[0]
    assert not rule("It was paid recently.")[0]


def test_a_status_is_passed_on_alone_and_markup_is_never_an_answer():
    rule = calling.passes_on({"transaction_id": "T1001", "status": "Paid"})
    assert rule("The status of your transaction T1001 is currently paid.")[0]
    assert not rule("It is paid, or maybe pending.")[0]
    assert not rule('<tool_response>{"status": "Paid"}</tool_response>')[0]
    assert not calling.passes_on({"error": "no transaction 'T9'"})("T9 is Paid.")[0]
    assert calling.passes_on({"error": "no transaction 'T9'"})("There is no transaction T9.")[0]
    slot = calling.passes_on({"error": "no transaction '{{transaction_id}}'"})  # 09's step 4 after a templated call
    ok, how = slot("The error \"no transaction '{{transaction_id}}'\" occurs when the `{{transaction_id}}` is not found.")
    assert not ok and "{{transaction_id}}" in how


def test_a_loop_that_stopped_at_max_turns_is_said_so_not_judged_empty():
    v = calling.loop_verdict(None, calling.names_all(["Paid"]), 2)
    assert v.kind == "cut" and "max_turns=2" in v.why
    assert calling.loop_verdict("It is Paid, on 2021-10-05.", calling.names_all(["Paid", "2021-10-05"]), 2).ok
    assert not calling.loop_verdict("It is Paid.", calling.names_all(["Paid", "2021-10-05"]), 2).ok


def test_loop_counts_reads_turns_calls_and_errors_from_the_messages():
    call = {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [{"role": "user", "content": "q"},
                {"role": "assistant", "content": "", "tool_calls": [call, call]},
                {"role": "tool", "content": json.dumps({"error": "boom"})},
                {"role": "tool", "content": json.dumps({"status": "Paid"})},
                {"role": "assistant", "content": "Paid."}]
    assert calling.loop_counts(messages, "Paid.") == {"turns": 2, "tool_calls": 2, "errors_fed_back": 1,
                                                      "stopped": "answered"}
    assert calling.loop_counts(messages[:4], None)["stopped"] == "max_turns"


def test_the_classification_verdict_is_definitive_and_a_cut_essay_is_wrong():
    tasks = selection.model_selection_tasks(pd.read_csv(data_path("payments.csv")))
    classify = tasks[0]
    assert classify.definitive and classify.expect("fraud") == (True, "passes the classification checker")
    cut = Attempt("m", False, 0.0, 0.1, "This is a classic example of", finish_reason="length")
    assert classify.verdict(cut).kind == "wrong"
    composition = tasks[2]
    assert composition.verdict(Attempt("m", False, 0.0, 0.1, "Dear customer,", finish_reason="length")).kind == "cut"


def test_where_it_went_says_whether_the_calls_or_the_writing_lost_a_fact():
    def loop(*results):
        calls = [{"function": {"name": f"f{i}"}} for i in range(len(results))]
        return [{"role": "user", "content": "q"}, {"role": "assistant", "content": "", "tool_calls": calls},
                *({"role": "tool", "content": json.dumps(r)} for r in results)]
    both = loop({"status": "Paid"}, {"date": "2021-10-05"})
    assert calling.where_it_went(both, "Paid on 2021-10-05.", ["Paid", "2021-10-05"]).endswith(": right")
    assert "answer lost ['2021-10-05']" in calling.where_it_went(both, "It is paid.", ["Paid", "2021-10-05"])
    said = calling.where_it_went(loop({"status": "Paid"}), "It is paid.", ["Paid", "2021-10-05"])
    assert "called f0" in said and "never fetched ['2021-10-05']" in said
    assert "stopped at max_turns" in calling.where_it_went(both, None, ["Paid"])


def test_03s_conclusions_pick_the_cheapest_tier_of_the_best_and_say_when_nothing_thought():
    per_tier = pd.DataFrame({"passed": [3, 4, 4], "cost_usd": [0.001, 0.009, 0.003]},
                            index=["small", "medium", "large"])
    assert selection.tier_conclusion(per_tier, 4, same_model=False).startswith("large passed the most tasks (4 of 4)")
    same = selection.tier_conclusion(per_tier.assign(passed=0), 4, same_model=True)
    assert "same 0 of 4" in same and "medium's rates they would cost 9.0× what they cost at small's" in same
    answers = {("small", "t1"): Attempt("small", True, 0.001, 1.0), ("small", "t2"): Attempt("small", False, 0.001, 1.0)}
    tasks = [SimpleNamespace(name="t1"), SimpleNamespace(name="t2")]
    offline = selection.grid_summary(answers, tasks, ["small", "medium", "large"], True, "SmolLM2 on the course endpoint")
    assert offline.startswith("2 answers written, one per task, all by SmolLM2 asked as small: 1 of 2 passed")
    assert "medium, large were not asked" in offline
    both = {**answers, **{("large", t): a for (_, t), a in answers.items()}}
    assert selection.grid_summary(both, tasks, ["small", "large"], False).startswith("2 of 4 answers passed")
    assert "SmolLM2, asked as small" in selection.effort_conclusion({}, "large", Attempt("large", False, 0.0, 1.0),
                                                                    written_by="SmolLM2, asked as small")
    big = Attempt("large", False, 0.0003, 1.0, "no", 70, 34)
    assert "nothing to compare" in selection.effort_conclusion({}, "large", big) and "34 output tokens" in \
        selection.effort_conclusion({}, "large", big)
    rows = {"small, reasoning_effort='high'": {"completion_tokens": 900, "correct": True}}
    assert selection.effort_conclusion(rows, "large", big).startswith("reasoning_effort='high': 900 output tokens, right")


def test_03s_verdicts_say_why_an_answer_fails():
    tasks = {t.name: t for t in selection.model_selection_tasks(pd.read_csv(data_path("payments.csv")))}
    ok, how = tasks["extraction"].expect('{"customer_id": "C042", "transaction_id": "123456", "amount": "A number of')
    assert not ok and "not valid JSON" in how and "transaction_id='123456'" in how and "customer_id" not in how
    ok, how = tasks["reasoning"].expect("The closest are 2021-10-12 and 2021-10-13.")
    assert not ok and "no amount of the table" in how and "no 11 days" in how
    assert tasks["reasoning"].expect("125.5 and 128.95, paid 11 days apart.") == (True, "passes the reasoning checker")
    ok, how = tasks["composition"].expect("Dear customer, Harbourline Bank")
    assert not ok and "no T1002, no 89.99" in how and "Harbourline" not in how


def test_03_records_no_pass_count_for_a_tier_it_did_not_ask():
    """Reader 7: offline, medium and large were priced copies of small's answers; their record says so."""
    S, L = "mistral-small-latest", "mistral-large-latest"
    tasks = [SimpleNamespace(name="t1"), SimpleNamespace(name="t2")]
    asked = {(S, t.name): Attempt(S, ok, 0.001, 1.0) for t, ok in zip(tasks, (True, False), strict=True)}
    copies = {(L, t.name): Attempt(L, a.correct, 0.01, float("nan")) for t in tasks
              for a in [asked[(S, t.name)]]}
    cfg = SimpleNamespace(backend="local")
    passed = selection.measured(cfg, {**asked, **copies}, tasks, [S, L])["passed"]
    assert passed == {S: "1 of 2", L: "not asked"}
    both = {**asked, **{k: Attempt(L, True, 0.01, 2.0) for k in copies}}
    assert selection.measured(cfg, both, tasks, [S, L])["passed"] == {S: "1 of 2", L: "2 of 2"}
