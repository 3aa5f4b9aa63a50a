"""helpers.course.evals.patterns: the labelled set, answer parsers and scores (no network; a fake client for run_pattern)."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest

from helpers.course.evals import patterns


@pytest.fixture(scope="module")
def data():
    return patterns.load_messages()


def test_labelled_set_meets_the_brief(data):
    test = data[data.split == "test"]
    assert len(test) >= 40 and set(test.intent) == set(patterns.INTENTS)
    assert (data.split == "example").sum() >= 6 and not set(data[data.split == "example"].id) & set(test.id)
    assert test.ambiguous.sum() >= 5 and (test.language != "en").sum() >= 5
    injected = test[test.injected_label.notna()]
    assert len(injected) >= 5 and (injected.injected_label != injected.intent).all()
    assert all(c and c in t for c, t in zip(injected.clean_text, injected.text, strict=True))
    for _, row in data.iterrows():  # every labelled field is written in the message itself
        if row.transaction_id:
            assert row.transaction_id in row.text
        if row.date:
            assert row.date in row.text
        if row.amount is not None:
            assert f"{row.amount:,.2f}" in row.text or f"{row.amount:.2f}" in row.text


def test_pick_keeps_every_injected_message_and_is_seeded(data):
    test = data[data.split == "test"]
    a, b = patterns.pick(test, 40, seed=3), patterns.pick(test, 40, seed=3)
    assert len(a) == 40 and list(a.id) == list(b.id)
    assert set(test[test.injected_label.notna()].id) <= set(a.id)
    with pytest.raises(ValueError, match="injected"):
        patterns.pick(test, 3)


@pytest.mark.parametrize("text,label", [
    ("fraud", "fraud"), ("The answer is: Refund.", "refund"), ('{"intent": "login"}', "login"),
    ("card or fees? card", "card"), ("The customer's message", None), ("", None), (None, None)])
def test_parse_label(text, label):
    assert patterns.parse_label(text) == label


def test_parse_json_finds_the_object_in_prose():
    assert patterns.parse_json('Sure! ```json\n{"amount": 5.0, "date": null}\n```') == {"amount": 5.0, "date": None}
    assert patterns.parse_json("{broken {\"a\": 1}") == {"a": 1} and patterns.parse_json("no json") is None


def test_field_scores():
    gold = {"amount": 1200.0, "date": None, "transaction_id": "T1201"}
    assert patterns.field_counts({"amount": "1,200.00", "date": None, "transaction_id": "t1201"}, gold) == (2, 2, 2)
    assert patterns.all_fields_right({"amount": 1200, "date": "null", "transaction_id": "T1201"}, gold)
    assert not patterns.all_fields_right({"amount": 1200, "date": "2026-01-01", "transaction_id": "T1201"}, gold)
    assert patterns.field_counts({"amount": 12, "date": "2026-01-01"}, gold) == (0, 2, 2)
    assert patterns.field_counts("not a dict", gold) == (0, 0, 2)
    assert patterns.f1(2, 2, 2) == 1.0 and patterns.f1(0, 3, 2) == 0.0
    assert patterns.f1(1, 2, 1) == pytest.approx(2 / 3)


def test_run_pattern_and_summary_with_a_fake_client(data):
    sent = []

    def complete(model, messages, **options):
        sent.append((messages, options))
        text = "fraud" if "not me" in messages[-1]["content"] else "hmm"
        return NS(choices=[NS(message=NS(role="assistant", content=text), finish_reason="stop")],
                  usage=NS(prompt_tokens=10, completion_tokens=1))

    client = NS(chat=NS(complete=complete))
    rows = data[data.id.isin(["M08", "M09"])]
    answers = patterns.run_pattern(client, "mistral-small-latest", lambda t: [{"role": "user", "content": t}], rows,
                                    read=patterns.parse_label, check=lambda p, row: p == row["intent"], max_tokens=3)
    assert [a.correct for a in answers] == [True, False] and sent[0][1] == {"max_tokens": 3}
    s = patterns.summary(answers)
    assert s["accuracy"] == 0.5 and s["prompt_tokens_per_message"] == 10 and s["usd_per_message"] > 0


# ---------------------------------------------------------------- classification by logprobs
def _lp_reply(alternatives):
    import math as _m
    from types import SimpleNamespace

    top = [SimpleNamespace(token=t, logprob=_m.log(p)) for t, p in alternatives]
    content = [SimpleNamespace(token=top[0].token, logprob=top[0].logprob, top_logprobs=top)]
    return SimpleNamespace(choices=[SimpleNamespace(logprobs=SimpleNamespace(content=content))],
                           usage=SimpleNamespace(prompt_tokens=50))


class _LogprobChat:
    """Answers by the text of the assistant prefix the request ends with (or none)."""

    def __init__(self, by_prefix):
        self.by_prefix, self.calls = by_prefix, []

    def complete(self, *, model, messages, **kw):
        assert kw["max_tokens"] == 1 and kw["logprobs"] is True and kw["top_logprobs"] == 5
        last = messages[-1]
        prefix = last["content"] if last["role"] == "assistant" and last.get("prefix") else ""
        self.calls.append(prefix)
        return _lp_reply(self.by_prefix[prefix])


def test_labels_of_reads_a_tokens_start_case_and_space_insensitively():
    assert patterns.labels_of(" card") == ["card"] and patterns.labels_of("Cards") == ["card"]
    assert patterns.labels_of("F") == ["fraud", "fees"] and patterns.labels_of("Ref") == ["refund"]
    assert patterns.labels_of("The") == [] and patterns.labels_of(" ") == [] and patterns.labels_of("<") == []


def test_label_probabilities_keep_shared_tokens_apart():
    scores, shared = patterns.label_probabilities(_lp_reply([(" card", 0.3), ("Card", 0.1), ("F", 0.2),
                                                              ("The", 0.3)]).choices[0].logprobs.content[0]
                                                   .top_logprobs)
    assert scores["card"] == pytest.approx(0.4) and scores["fraud"] == 0.0 and shared == {"F": pytest.approx(0.2)}


def test_classify_by_logprobs_resolves_a_shared_first_token_only_when_it_could_win():
    from types import SimpleNamespace

    import pandas as pd

    rows = pd.DataFrame([{"id": "A", "text": "x", "intent": "fees"}, {"id": "B", "text": "y", "intent": "card"}])
    # A: 'F' (0.5) beats card (0.25) if all of it went to one label: resolved by a call with prefix 'Cat: F'
    chat = _LogprobChat({"Cat:": [(" card", 0.25), (" F", 0.5), ("The", 0.1)],
                         "Cat: F": [("ees", 0.6), ("ra", 0.2), ("oo", 0.2)]})
    client = SimpleNamespace(chat=chat)

    def build(text):
        return [{"role": "user", "content": text}, {"role": "assistant", "content": "Cat:", "prefix": True}]

    out = patterns.classify_by_logprobs(client, "m", build, rows.iloc[:1], top_logprobs=5)
    assert chat.calls == ["Cat:", "Cat: F"]  # the prefix was extended, not a second assistant message
    a = out[0]
    assert a.label == "fees" and a.correct and a.requests == 2
    # p(' F') × p('ees' | ' F'); 'oo' starts no label, so its share of ' F' goes to none
    assert a.probability == pytest.approx(0.5 * 0.6) and a.label_mass == pytest.approx(0.25 + 0.5 * 0.8)
    # B: card at 0.6 cannot be overtaken by 'F' at 0.1: no second call
    chat2 = _LogprobChat({"Cat:": [(" card", 0.6), (" F", 0.1)]})
    out = patterns.classify_by_logprobs(SimpleNamespace(chat=chat2), "m", build, rows.iloc[1:], top_logprobs=5)
    assert chat2.calls == ["Cat:"] and out[0].label == "card" and out[0].correct


def test_classify_by_logprobs_says_so_when_the_server_gives_no_logprobs():
    from types import SimpleNamespace

    import pandas as pd

    class NoLogprobs:
        def complete(self, **kw):
            return SimpleNamespace(choices=[SimpleNamespace(logprobs=None)], usage=SimpleNamespace(prompt_tokens=3))

    rows = pd.DataFrame([{"id": "A", "text": "x", "intent": "fees"}])
    with pytest.raises(ValueError, match="no logprobs"):
        patterns.classify_by_logprobs(SimpleNamespace(chat=NoLogprobs()), "m", lambda t: [], rows)


def test_the_sdk_has_the_assistant_prefix_notebook_02_teaches():
    """02 says the SDK carries Mistral's `prefix` on an assistant message: the installed SDK must have the field."""
    from mistralai.client.models import AssistantMessage

    assert "prefix" in AssistantMessage.model_fields
    assert AssistantMessage(content="Category:", prefix=True).prefix is True
