"""helpers.playground: the API playground builds headless, and Send calls the model and prices the reply."""

from __future__ import annotations

import pytest
from mistralai.client.models import AssistantMessage, ChatCompletionChoice, ChatCompletionResponse, UsageInfo

from helpers.catalog import cost_usd
from helpers.playground import api_playground


class FakeChat:
    def __init__(self):
        self.requests = []

    def complete(self, *, model, messages, **kwargs):
        self.requests.append({"model": model, "messages": messages, **kwargs})
        if model == "broken-model":
            raise RuntimeError("404 Invalid model")
        return ChatCompletionResponse(
            id="cmpl", object="chat.completion", model=model, created=0,
            usage=UsageInfo(prompt_tokens=1200, completion_tokens=300, total_tokens=1500),
            choices=[ChatCompletionChoice(index=0, finish_reason="stop",
                                          message=AssistantMessage(role="assistant", content=f"Paris ({model})"))])


class FakeClient:
    def __init__(self):
        self.chat = FakeChat()


def test_send_shows_answer_and_cost():
    client = FakeClient()
    pg = api_playground(client, system="Be brief.")
    assert pg.controls["model"].value == "mistral-small-latest"
    pg.set(model="mistral-large-latest", temperature=0.9, max_tokens=64, prompt="Capital of France?")
    pg.button.click()
    assert pg.error is None
    assert pg.answer.value == "Paris (mistral-large-latest)"
    request = client.chat.requests[-1]
    assert (request["model"], request["temperature"], request["max_tokens"]) == ("mistral-large-latest", 0.9, 64)
    assert request["messages"] == [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "Capital of France?"}]
    expected = cost_usd("mistral-large-latest", prompt_tokens=1200, completion_tokens=300)
    assert pg.last.cost_usd == pytest.approx(expected) == pytest.approx(0.00105)
    assert f"${expected:.6f}" in pg.cost.value and "1200 prompt + 300 completion" in pg.cost.value
    pg.set(model="mistral-small-latest").button.click()
    assert len(pg.history) == 2
    assert pg.total_cost_usd == pytest.approx(expected + cost_usd("mistral-small-latest", prompt_tokens=1200,
                                                                   completion_tokens=300))
    assert not pg.button.disabled
    saved = pg.widget._repr_mimebundle_()["text/plain"]  # what a saved notebook shows without a live kernel
    assert saved.startswith("[the playground's widgets") and "VBox" not in saved


def test_errors_show_in_the_widget_not_as_a_crash():
    pg = api_playground(FakeClient(), models=["broken-model"])
    pg.button.click()
    assert isinstance(pg.error, RuntimeError) and "404 Invalid model" in pg.cost.value
    assert pg.history == [] and not pg.button.disabled


def test_unpriced_model_and_unknown_control():
    pg = api_playground(FakeClient(), model="open-mistral-nemo")
    assert pg.controls["model"].options[0] == "open-mistral-nemo"
    pg.button.click()
    assert pg.error is None and pg.last.cost_usd is None and "no price" in pg.cost.value
    with pytest.raises(KeyError, match="No control 'colour'"):
        pg.set(colour="red")
