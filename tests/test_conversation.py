"""The chat's state (helpers.conversation) and the chat widget (helpers.playground.chat_playground), with a fake client."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest

from helpers.conversation import Conversation
from helpers.playground import chat_playground

SMALL = "mistral-small-latest"


class FakeChat:
    """Answers `chat.stream` with a scripted reply in pieces, then usage; records every request."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.calls = []

    def stream(self, *, model, messages, max_tokens, temperature):
        self.calls.append({"model": model, "messages": messages, "max_tokens": max_tokens})
        words = self.replies.pop(0).split(" ")
        prompt = sum(len(m["content"].split()) for m in messages)
        for i, word in enumerate(words):
            last = i == len(words) - 1
            yield NS(data=NS(choices=[NS(delta=NS(content=word + ("" if last else " ")))],
                             usage=NS(prompt_tokens=prompt, completion_tokens=len(words)) if last else None))


def fake_client(*replies):
    return NS(chat=FakeChat(replies))


def test_every_call_carries_the_whole_history():
    client = fake_client("Hello Ana.", "Your id was T1042.")
    convo = Conversation(client, SMALL, system="Be brief.")
    convo.send("Hi, I am Ana. My payment T1042 failed.")
    convo.send("What was my payment id?")
    first, second = client.chat.calls
    assert first["messages"] == [{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": "Hi, I am Ana. My payment T1042 failed."}]
    assert second["messages"][:2] == first["messages"]
    assert second["messages"][2] == {"role": "assistant", "content": "Hello Ana."}
    assert second["messages"][3]["content"] == "What was my payment id?"
    assert convo.requests == [first["messages"], second["messages"]]


def test_streamed_pieces_arrive_in_order_and_make_the_answer():
    pieces = []
    convo = Conversation(fake_client("one two three"), SMALL)
    turn = convo.send("count", on_text=pieces.append)
    assert pieces == ["one ", "two ", "three"] and turn.assistant == "one two three"


def test_tokens_and_cost_add_up_over_turns_and_reset_forgets():
    convo = Conversation(fake_client("a b", "c d e"), SMALL, system="")
    t1 = convo.send("x y")
    t2 = convo.send("z")
    assert (t1.prompt_tokens, t1.completion_tokens) == (2, 2)
    assert t2.prompt_tokens == 2 + 2 + 1  # the first turn is paid for again
    assert convo.tokens == 4 + 8
    assert convo.cost_usd == pytest.approx(t1.cost_usd + t2.cost_usd) and convo.cost_usd > 0
    convo.reset()
    assert convo.turns == [] and convo.messages == [] and convo.tokens == 0


def test_unpriced_model_costs_none_and_empty_message_is_refused():
    convo = Conversation(fake_client("ok"), "my-own-model")
    convo.send("hi")
    assert convo.cost_usd is None
    with pytest.raises(ValueError, match="Type a message"):
        convo.send("   ")


def test_widget_two_turns_from_code_second_request_has_the_first_turn():
    client = fake_client("Hello Ana.", "It was T1042.")
    pg = chat_playground(client, SMALL, system="Be brief.")
    pg.set(prompt="I am Ana, payment T1042.")
    pg.button.click()
    pg.set(prompt="Which payment?")
    pg.button.click()
    assert pg.error is None and len(pg.history) == 2 and pg.last.assistant == "It was T1042."
    second = client.chat.calls[1]["messages"]
    assert {"role": "user", "content": "I am Ana, payment T1042."} in second
    assert {"role": "assistant", "content": "Hello Ana."} in second
    assert "It was T1042." in pg.transcript.value and "2 turn(s)" in pg.counter.value and "$" in pg.counter.value
    assert pg.controls["prompt"].value == ""  # cleared for the next message


def test_widget_system_box_reset_button_and_errors_shown():
    client = fake_client("first", "again")
    pg = chat_playground(client, SMALL)
    pg.set(system="Answer in French.", prompt="hi")
    pg.button.click()
    assert client.chat.calls[0]["messages"][0] == {"role": "system", "content": "Answer in French."}
    pg.reset_button.click()
    assert pg.history == [] and "0 turn(s)" in pg.counter.value
    pg.set(prompt="hello")
    pg.button.click()
    assert client.chat.calls[1]["messages"][1:] == [{"role": "user", "content": "hello"}]
    pg.set(prompt="one more")
    pg.button.click()  # the fake has no reply left: the error is shown, not lost
    assert isinstance(pg.error, IndexError) and "IndexError" in pg.counter.value and not pg.button.disabled
