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
    assert wrong.kind == "wrong" and "transaction_id 'PaymentT1002', not 'T1002'" in wrong.why and "status 'Paid', not 'Pending'" in wrong.why
    assert "amount_eur" not in wrong.why  # 89.99 is right
    said_no = judge("No, it cannot be recalled.", **quickstart.RECALL)
    assert said_no.ok and said_no.why == "says 'No'"  # what matched, in words: never the rule's regex
    assert "/" not in judge("I am not sure.", **quickstart.RECALL).why


def test_a_reply_of_several_sentences_or_a_repeat_is_wrong_one_sentence_is_left_to_a_reader():
    assert judge("Yes. It costs nothing. Really.", **conversations.reply_rule("Yes. It costs nothing. Really.", [])).kind == "wrong"
    repeat = judge("Hello there.", **conversations.reply_rule("Hello there.", ["Hi.", "Hello there."]))
    assert repeat.kind == "wrong" and "turn 2" in repeat.why
    assert judge("It costs nothing.", **conversations.reply_rule("It costs nothing.", [])).kind == "unchecked"


def test_a_name_no_turn_said_is_flagged_as_invented_and_a_name_the_user_gave_is_not():
    sent = [{"role": "system", "content": "You are Harbourline Bank's assistant."},
            {"role": "user", "content": "Hi, I'm Ana. My payment T1042 failed."},
            {"role": "assistant", "content": "Amara, welcome."}]  # the model's own earlier reply does not count
    invented = judge("Amara, it costs nothing.", **conversations.reply_rule("Amara, it costs nothing.", [], sent))
    assert invented.kind == "wrong" and "'Amara'" in invented.why and "invented" in invented.why
    assert judge("Hello Ana, it costs nothing.", **conversations.reply_rule("Hello Ana, it costs nothing.", [], sent)).kind == "unchecked"
    assert conversations.invented_names("Yes, it is free. I'm Harbourline's assistant.", sent) == []
    invented_and_cut = judge("Amara, I cannot see", conversations.recalls("T1042", sent), finish_reason="length")
    assert invented_and_cut.kind == "wrong" and "'Amara'" in invented_and_cut.why  # more tokens cannot unsay a name
    cut = judge("I cannot see", conversations.recalls("T1042", sent), finish_reason="length")
    assert cut.kind == "cut" and "does not say 'T1042'" in cut.why
    assert judge("It was T1042.", conversations.recalls("T1042", sent)).kind == "right"
    assert judge("Amara, it was T1042.", conversations.recalls("T1042", sent)).kind == "wrong"


def test_label_and_field_rules():
    assert judge("This is about fraud.", patterns.is_label("fraud")).kind == "right"
    assert judge("card, or maybe fraud", patterns.is_label("fraud")).kind == "wrong"  # the first label named counts
    begun = judge("You can't pay back a refund of", patterns.is_label("refund"), finish_reason="length")
    assert begun.kind == "wrong" and "no label in its first 4 words" in begun.why  # a sentence begun: not a label
    assert judge("Ich habe", patterns.is_label("fraud"), finish_reason="length").kind == "cut"  # 4 words not yet out
    gold = {"amount": 120.0, "date": None, "transaction_id": "T1001"}
    assert judge('{"amount": 120, "date": null, "transaction_id": "T1001"}', patterns.fields_are(gold)).kind == "right"
    assert judge('{"amount": 12, "date": null, "transaction_id": "T1001"}', patterns.fields_are(gold)).kind == "wrong"


def test_the_pattern_conclusion_says_when_every_answer_copies_an_example():
    import pandas as pd

    shots = pd.DataFrame([
        {"pattern": "zero-shot", "intent": "fees", "answer": "No, standard transfers are", "verdict": "✗ wrong: …"},
        {"pattern": "zero-shot", "intent": "refund", "answer": "refund", "verdict": "✓ right: …"},
        {"pattern": "few-shot (k=2)", "intent": "fees", "answer": "fraud", "verdict": "✗ wrong: …"},
        {"pattern": "few-shot (k=2)", "intent": "fraud", "answer": "fraud", "verdict": "✓ right: …"}])
    zero, few = patterns.what_each_pattern_did(shots, ["card", "fraud"])
    assert zero.startswith("zero-shot: right 1 of 2; 1 of 2 with no label in the first 4 words") and "copies" not in zero
    assert "named 'fraud' for all 2 messages, the label of few-shot example 2" in few and "copies" in few


def test_the_trimming_conclusion_says_what_fitting_the_budget_cost():
    import pandas as pd

    def table(*rows):
        return pd.DataFrame([dict(zip(["variant", "prompt_tokens", "within budget", "fact sent", "verdict"], r,
                                      strict=True)) for r in rows]).set_index("variant")

    whole, over, fits = ("whole history", 224, False, True, "✂ cut"), ("last 2 turns", 144, False, False, "✂ cut"), \
        ("last 1 turn", 98, True, False, "✗ wrong")
    said = conversations.what_trimming_did(table(whole, over, fits), 130, "T1042")
    assert "Still over: the last 2 turns (144)" in said and "last 1 turn fits (98 tokens) but no longer sends T1042" in said
    assert "Answers that name T1042: none (even where it was sent" in said
    stuck = conversations.what_trimming_did(table(whole, over), 130, "T1042")
    assert "Nothing kept fits: raise BUDGET_TOKENS" in stuck


def test_the_invention_conclusions_name_what_no_message_held():
    sent = [{"role": "system", "content": "You are a bank's assistant."}, {"role": "user", "content": "Hi, I'm Ana."}]
    said = conversations.what_replies_invented(["Amara, welcome.", "Ana, yes.", "Amara, no."], sent, "TinyLM")
    assert said.startswith("2 of 3 replies name 'Amara', a name no message sent holds: TinyLM made it up")
    assert conversations.what_replies_invented(["Ana, yes."], sent, "TinyLM").startswith("No reply names anyone")
    made_up = conversations.invented_numbers('Category: 120.00 EUR "15', "Abbuchung T1204 über 150.00 EUR")
    assert "contain: 120.00, 15 (the message's: T1204, 150.00)" in made_up
    assert conversations.invented_numbers("Category: fraud", "T1204 of 150.00 EUR").startswith("Every number")


def test_an_answer_that_lists_the_labels_chose_none():
    """Reader 6: "One word: card, fraud, refund, …" echoes the rule's list; it is not a label given first."""
    import pandas as pd

    echo = "One word: card, fraud, refund, transfer, fees, login."
    assert patterns.lists_labels(echo) and not patterns.lists_labels("One word: refund.")
    assert judge(echo, patterns.is_label("card")).kind == "wrong"  # its first label is right only by accident
    prefixed = pd.DataFrame({"answer": [echo, "One word: refund."], "verdict": ["✗ wrong", "✓ right"]})
    said = patterns.what_the_prefix_did(prefixed, pd.DataFrame({"answer": ["I can help", "Sure, I"]}), "One word:")
    assert said.startswith("With the prefix 'One word:', 1 of 2 answers give one label first (1 the right one), "
                           "1 only lists the rule's labels; without it (section 2's zero-shot), 0 of 2 did.")
