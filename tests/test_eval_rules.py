"""The verdict rules notebooks 01 and 02 judge their answers by (helpers/course/evals: quickstart, conversations,
patterns.is_label / fields_are): each says right where the answer is right, and wrong, with how, where it is not."""

from __future__ import annotations

from helpers.course.evals import conversations, patterns, quickstart
from helpers.course.verdicts import judge


def test_quickstart_rules_tell_right_from_wrong():
    assert judge("Blue.", **quickstart.ONE_COLOUR).kind == "right"
    listed = judge("Red, green, blue and yellow", **quickstart.ONE_COLOUR, finish_reason="length")
    assert listed.kind == "wrong" and "4 colours" in listed.why  # definitive: cut or not, a list is not one colour
    assert judge("1, 2, three, 4, 5", **quickstart.COUNT_TO_FIVE).kind == "right"
    assert "misses [4, 5]" in judge("1 2 3", **quickstart.COUNT_TO_FIVE).why
    assert judge('{"city": "Paris", "country": "France"}', **quickstart.JSON_CITY).kind == "right"
    assert judge('{"capital": "Paris"}', **quickstart.JSON_CITY).kind == "wrong"
    assert judge("No, it cannot be recalled once confirmed.", **quickstart.RECALL).kind == "right"
    assert judge("Yes, you can recall it.", **quickstart.RECALL).kind == "wrong"


def test_the_payment_rule_names_each_wrong_field():
    right = '{"transaction_id": "T1002", "amount_eur": 89.99, "status": "Pending"}'
    assert judge(right, **quickstart.PAYMENT).kind == "right"
    wrong = judge('{"transaction_id": "PaymentT1002", "amount_eur": 89.99, "status": "Paid"}', **quickstart.PAYMENT)
    assert wrong.kind == "wrong" and "said transaction_id" in wrong.why and "said status" in wrong.why
    assert "said amount_eur" not in wrong.why  # 89.99 is right


def test_a_reply_of_several_sentences_or_a_repeat_is_wrong_one_sentence_is_left_to_a_reader():
    assert judge("Yes. It costs nothing. Really.", **conversations.reply_rule("Yes. It costs nothing. Really.", [])).kind == "wrong"
    repeat = judge("Hello there.", **conversations.reply_rule("Hello there.", ["Hi.", "Hello there."]))
    assert repeat.kind == "wrong" and "turn 2" in repeat.why
    assert judge("It costs nothing.", **conversations.reply_rule("It costs nothing.", [])).kind == "unchecked"


def test_label_and_field_rules():
    assert judge("This is about fraud.", patterns.is_label("fraud")).kind == "right"
    assert judge("card, or maybe fraud", patterns.is_label("fraud")).kind == "wrong"  # the first label named counts
    gold = {"amount": 120.0, "date": None, "transaction_id": "T1001"}
    assert judge('{"amount": 120, "date": null, "transaction_id": "T1001"}', patterns.fields_are(gold)).kind == "right"
    assert judge('{"amount": 12, "date": null, "transaction_id": "T1001"}', patterns.fields_are(gold)).kind == "wrong"
