"""The API-only cells of 02 (Conversations API) and 03 (reasoning_effort), run up to the network boundary.

Each cell's own source is executed with an SDK client whose httpx transport is a mock: with BACKEND='mistral' it
must send the requests La Plateforme expects and compute its numbers from the answers; without a key 03 must show the
endpoint's refusal and measure nothing. No network.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import httpx2
import nbformat
import pandas as pd
import pytest
from mistralai.client import Mistral

from helpers import catalog
from helpers.course.evals import selection
from helpers.course.verdicts import Verdicts
from helpers.settings import data_path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def cell_with(notebook: str, marker: str) -> str:
    nb = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    found = [c.source for c in nb.cells if c.cell_type == "code" and marker in c.source]
    assert len(found) == 1, f"{notebook}: {len(found)} cells hold {marker!r}"
    return found[0]


def mock_client(handler) -> Mistral:
    return Mistral(api_key="test-key", client=httpx2.Client(transport=httpx2.MockTransport(handler)))


def chat_answer(content, completion_tokens, prompt_tokens=77):
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "mistral-small-latest",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens, "prompt_tokens_details": {"cached_tokens": 0}}}


@pytest.fixture
def reasoning_namespace():
    payments = pd.read_csv(data_path("payments.csv"))
    tasks = selection.model_selection_tasks(payments)
    reasoning = next(t for t in tasks if t.name == "reasoning")
    truth = selection.closest_payments(payments)
    right = (f"The two closest amounts are {truth['amounts'][0]} and {truth['amounts'][1]}, paid "
             f"{truth['days_apart']} days apart.")
    assert reasoning.check(right)
    big = catalog.Attempt("mistral-large-latest", False, 0.0004, 1.0, "no idea", 70, 40)
    return {"tasks": tasks, "catalog": catalog, "pd": pd, "tally": Verdicts(), "REASONING_TOKENS": 4000,
            "selection": selection, "TIERS": ["mistral-large-latest"],
            "results": {("mistral-large-latest", "reasoning"): big}}, right


def test_03_reasoning_effort_cell_sends_none_and_high_and_prices_the_extra_tokens(reasoning_namespace):
    ns, right = reasoning_namespace
    sent = []

    def handler(request):
        body = json.loads(request.content)
        sent.append(body)
        if body["reasoning_effort"] == "high":  # a thinking chunk, then the answer
            return httpx2.Response(200, json=chat_answer(
                [{"type": "thinking", "thinking": [{"type": "text", "text": "Sort the amounts first..."}]},
                 {"type": "text", "text": right}], completion_tokens=1114))
        return httpx2.Response(200, json=chat_answer(right, completion_tokens=40))

    ns.update(client=mock_client(handler), cfg=SimpleNamespace(backend="mistral"))
    exec(cell_with("03_model_selection.ipynb", "EFFORT_MODEL ="), ns)
    assert [b["reasoning_effort"] for b in sent] == ["none", "high"]
    assert all(b["model"] == "mistral-small-latest" and b["max_tokens"] == 4000 for b in sent)
    rows = ns["effort_rows"]
    high = rows["mistral-small-latest, reasoning_effort='high'"]
    none = rows["mistral-small-latest, reasoning_effort='none'"]
    assert (high["completion_tokens"], none["completion_tokens"]) == (1114, 40)
    assert high["thinking_chars"] == len("Sort the amounts first...") and none["thinking_chars"] == 0
    assert high["cost_usd"] == pytest.approx((77 * 0.15 + 1114 * 0.60) / 1e6)
    assert high["correct"] and none["correct"]  # the thinking chunk is not read as the answer
    assert ns["effort_refusal"] is None and [v.kind for _, v in ns["tally"].items] == ["right", "right"]


def test_03_reasoning_effort_cell_without_a_key_shows_the_refusal(reasoning_namespace, capsys):
    ns, _ = reasoning_namespace

    def handler(request):  # what the course endpoint answers
        return httpx2.Response(400, json={"object": "error", "message": "reasoning_effort='high': no reasoning mode",
                                          "type": "invalid_request_error", "param": None, "code": "3001"})

    ns.update(client=mock_client(handler), cfg=SimpleNamespace(backend="local", answered_by="SmolLM2 on the endpoint"))
    exec(cell_with("03_model_selection.ipynb", "EFFORT_MODEL ="), ns)
    out = capsys.readouterr().out
    assert "reasoning_effort='high' refused: 400" in out  # said, not measured
    assert "SmolLM2 (offline the one model behind every tier, mistral-large-latest too)" in out  # who wrote it
    assert ns["effort_rows"] == {} and ns["effort_refusal"] == "400: reasoning_effort='high': no reasoning mode"


def test_02_conversations_cell_starts_then_appends_only_the_new_message(capsys):
    sent = []

    def handler(request):
        sent.append((request.method, request.url.path, json.loads(request.content)))
        return httpx2.Response(200, json={
            "object": "conversation.response", "conversation_id": "conv_42",
            "outputs": [{"object": "entry", "type": "message.output", "role": "assistant", "id": "m1",
                         "content": "Your name is Ana." if len(sent) > 1 else "Sorry to hear that.",
                         "created_at": "2026-12-01T00:00:00Z", "model": "mistral-small-latest"}],
            "usage": {"prompt_tokens": 40, "completion_tokens": 6, "total_tokens": 46}})

    from helpers.tools import content_text

    ns = {"client": mock_client(handler), "cfg": SimpleNamespace(backend="mistral"), "MODEL": "mistral-small-latest",
          "FACT": "T1042", "SYSTEM": "Answer in one short sentence.", "TURN_TOKENS": 64, "tally": Verdicts(),
          "content_text": content_text, "json": json}
    exec(cell_with("02_prompting_conversations.ipynb", "client.beta.conversations.start"), ns)
    (m1, p1, b1), (m2, p2, b2) = sent
    assert (m1, p1) == ("POST", "/v1/conversations") and "T1042" in b1["inputs"] and b1["instructions"]
    assert b1["completion_args"] == {"max_tokens": 64, "temperature": 0.0}
    assert p2 == "/v1/conversations/conv_42" and b2["inputs"] == "What is my name?"  # the history stays on the server
    assert ns["server_history"] == {"second_call_prompt_tokens": 40, "answer_names_ana": True}
    assert ns["tally"].items[-1][1].kind == "right"


def test_02_conversations_cell_without_a_key_shows_the_endpoints_refusal(capsys):
    def handler(request):
        return httpx2.Response(404, json={"object": "error", "message": "The Conversations API ... keeps no state",
                                          "type": "invalid_request_error", "param": None, "code": "not_served_locally"})

    ns = {"client": mock_client(handler), "cfg": SimpleNamespace(backend="local"), "MODEL": "mistral-small-latest",
          "FACT": "T1042", "SYSTEM": "s", "TURN_TOKENS": 64, "tally": Verdicts(), "json": json}
    exec(cell_with("02_prompting_conversations.ipynb", "client.beta.conversations.start"), ns)
    out = capsys.readouterr().out
    assert "not measured here: no key" in out and "404: The Conversations API" in out
    assert ns["server_history"] is None and ns["conversations_refusal"].startswith("404")
