"""helpers.tools: tool specs from typed functions, and the tool loop against scripted (bad) model outputs."""

from __future__ import annotations

import functools
import json
from enum import Enum
from typing import Annotated, Literal

import pandas as pd
import pytest
from mistralai.client.models import (
    AssistantMessage,
    ChatCompletionChoice,
    ChatCompletionResponse,
    FunctionCall,
    TextChunk,
    ThinkChunk,
    ToolCall,
    UsageInfo,
)
from pydantic import Field

from helpers.tools import Toolbox, ToolSpecError, content_text, parse_docstring, run_tools, tool_spec


class Currency(str, Enum):
    EUR = "EUR"
    USD = "USD"


def list_payments(
    status: Literal["Paid", "Pending", "Failed", "Refunded"],
    customer_id: str | None = None,
    limit: int = 5,
    min_amount: float = 0.0,
    currency: Currency = Currency.EUR,
    include_refunds: bool = False,
) -> list:
    """List a customer's payments that have a given status.

    Args:
        status: the payment status to match.
        customer_id: only this customer's payments; every customer
            when omitted.
        limit: at most this many payments.
        min_amount: ignore payments below this amount.
        currency: the currency of the amounts.
        include_refunds: also list refunds.
    """
    return []


PAYMENTS = pd.DataFrame({"transaction_id": ["T1001", "T1002"], "payment_status": ["Paid", "Pending"],
                         "payment_date": ["2021-10-05", "2021-10-06"]})


def retrieve_payment_status(transaction_id: str) -> dict:
    """Get the payment status of a transaction.

    :param transaction_id: The transaction id, e.g. T1001.
    """
    rows = PAYMENTS[PAYMENTS.transaction_id == transaction_id]
    if rows.empty:
        raise LookupError(f"no transaction {transaction_id}")
    return {"status": rows.payment_status.iloc[0]}


def retrieve_payment_date(transaction_id: str) -> dict:
    """Get the date a transaction was paid.

    Args:
        transaction_id: The transaction id, e.g. T1001.
    """
    rows = PAYMENTS[PAYMENTS.transaction_id == transaction_id]
    if rows.empty:
        raise LookupError(f"no transaction {transaction_id}")
    return {"date": rows.payment_date.iloc[0]}


# ---------------------------------------------------------------- specs
def test_spec_types_defaults_optional_enums_and_descriptions():
    spec = tool_spec(list_payments)
    fn = spec["function"]
    assert spec["type"] == "function" and fn["name"] == "list_payments"
    assert fn["description"] == "List a customer's payments that have a given status."
    params = fn["parameters"]
    props = params["properties"]
    assert params["type"] == "object" and params["required"] == ["status"]
    assert props["status"] == {"type": "string", "enum": ["Paid", "Pending", "Failed", "Refunded"],
                               "description": "the payment status to match."}
    assert props["customer_id"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    assert props["customer_id"]["default"] is None
    assert props["customer_id"]["description"] == "only this customer's payments; every customer when omitted."
    assert (props["limit"]["type"], props["limit"]["default"]) == ("integer", 5)
    assert props["min_amount"]["type"] == "number"
    assert props["include_refunds"] == {"type": "boolean", "default": False, "description": "also list refunds."}
    assert props["currency"]["enum"] == ["EUR", "USD"] and props["currency"]["default"] == "EUR"
    assert "$defs" not in params and "$ref" not in json.dumps(params), "enum definitions are inlined"
    assert "title" not in json.dumps(params)


def test_spec_matches_the_seeds_hand_written_schema():
    hand_written = {"type": "object", "properties": {"transaction_id": {"type": "string",
                    "description": "The transaction id, e.g. T1001."}}, "required": ["transaction_id"]}
    assert tool_spec(retrieve_payment_status)["function"]["parameters"] == hand_written  # Sphinx-style docstring
    assert tool_spec(retrieve_payment_date)["function"]["parameters"] == hand_written    # Google-style docstring


def lookup_payment(
    transaction_id: Annotated[str, Field(pattern=r"^T[0-9]{4}$")],
    status: Literal["Paid", "Pending"] = "Paid",
    limit: Annotated[int, Field(ge=1, le=10)] = 5,
    amount: Annotated[float, Field(gt=0)] = 1.0,
    currency: Annotated[str, Field(min_length=3, max_length=3, description="ISO 4217 code, e.g. EUR.")] = "EUR",
) -> dict:
    """Look a payment up.

    Args:
        transaction_id: The transaction id, e.g. T1001.
    """
    return {"transaction_id": transaction_id}


def test_value_shaped_parameters_carry_pattern_enum_and_bounds_into_the_spec():
    props = tool_spec(lookup_payment)["function"]["parameters"]["properties"]
    assert props["transaction_id"] == {"type": "string", "pattern": "^T[0-9]{4}$",
                                       "description": "The transaction id, e.g. T1001."}
    assert props["status"]["enum"] == ["Paid", "Pending"]
    assert (props["limit"]["minimum"], props["limit"]["maximum"]) == (1, 10)
    assert props["amount"]["exclusiveMinimum"] == 0
    assert (props["currency"]["minLength"], props["currency"]["maxLength"]) == (3, 3)
    # no docstring line for it: the description written in Field(...) is kept, not overwritten with nothing
    assert props["currency"]["description"] == "ISO 4217 code, e.g. EUR."


def test_the_same_shape_checks_the_arguments_the_model_sends():
    box = Toolbox([lookup_payment])
    assert not box.call("lookup_payment", {"transaction_id": "T1001"}).error
    for bad in ({"transaction_id": "1001"}, {"transaction_id": "T1001", "limit": 11},
                {"transaction_id": "T1001", "amount": 0}, {"transaction_id": "T1001", "status": "Lost"}):
        result = box.call("lookup_payment", bad)
        assert result.error and "do not match the schema" in result.content, bad


def test_value_shaped_spec_compiles_to_a_grammar_that_only_writes_such_values():
    import torch
    from transformers import AutoTokenizer

    from helpers.course.standin import standin_path
    from helpers.endpoint.constrained import GrammarCache, tool_calls_schema

    grammars = GrammarCache(AutoTokenizer.from_pretrained(standin_path()), 32768, [2])
    compiled = grammars.json_schema(tool_calls_schema([tool_spec(lookup_payment)]))
    for seed in range(4):  # random logits: the worst model; the grammar alone must keep the values shaped
        gen, constraint, ids = torch.Generator().manual_seed(seed), grammars.matcher(compiled), []
        while not constraint.finished and len(ids) < 300:
            logits = torch.randn(1, 32768, generator=gen) * 3
            constraint.mask(logits)
            tok = int(torch.multinomial(torch.softmax(logits, -1)[0], 1, generator=gen))
            assert constraint.accept(tok)
            ids.append(tok)
        [call] = json.loads(grammars.hf_tokenizer.decode(ids[:-1]))
        assert not Toolbox([lookup_payment]).call("lookup_payment", call["arguments"]).error, call


def test_bound_arguments_disappear_from_the_spec():
    def lookup(table: pd.DataFrame, transaction_id: str) -> dict:
        """Look a transaction up."""
        return {}

    spec = tool_spec(functools.partial(lookup, PAYMENTS), name="lookup")
    assert list(spec["function"]["parameters"]["properties"]) == ["transaction_id"]


def test_docstring_parser():
    summary, params = parse_docstring("""Do a thing.

    More words.

    Args:
        a (int): first.
        b: second,
            continued.
    Returns:
        nothing: really.
    """)
    assert summary == "Do a thing. More words."
    assert params == {"a": "first.", "b": "second, continued."}


def _no_args(*values: str) -> str:
    return ""


def _no_kwargs(**values: str) -> str:
    return ""


def _untyped(transaction_id) -> str:
    return ""


def _frame(df: pd.DataFrame) -> str:
    return ""


def _positional(x: str, /) -> str:
    return ""


@pytest.mark.parametrize("fn, message", [
    (_no_args, r"\*values cannot be described"),
    (_no_kwargs, r"\*\*values cannot be described"),
    (_untyped, "'transaction_id' has no type annotation"),
    (_frame, "'df' has type DataFrame, which cannot be written as JSON schema.*functools.partial"),
    (_positional, "positional-only"),
])
def test_unexpressible_signatures_are_clear_errors(fn, message):
    with pytest.raises(ToolSpecError, match=message):
        tool_spec(fn)


# ---------------------------------------------------------------- scripted model
def tool_response(*calls: tuple[str, str, object]) -> ChatCompletionResponse:
    tool_calls = [ToolCall(id=cid, type="function", function=FunctionCall(name=name, arguments=args))
                  for cid, name, args in calls]
    return ChatCompletionResponse(
        id="cmpl", object="chat.completion", model="scripted", created=0,
        usage=UsageInfo(prompt_tokens=50, completion_tokens=10, total_tokens=60),
        choices=[ChatCompletionChoice(index=0, finish_reason="tool_calls",
                                      message=AssistantMessage(role="assistant", content="", tool_calls=tool_calls))])


def text_response(text: str) -> ChatCompletionResponse:
    return ChatCompletionResponse(
        id="cmpl", object="chat.completion", model="scripted", created=0,
        usage=UsageInfo(prompt_tokens=80, completion_tokens=12, total_tokens=92),
        choices=[ChatCompletionChoice(index=0, finish_reason="stop",
                                      message=AssistantMessage(role="assistant", content=text))])


class ScriptedChat:
    """Returns the scripted responses in order and records every request."""

    def __init__(self, script):
        self.script, self.requests = list(script), []

    def complete(self, **request):
        self.requests.append({**request, "messages": [dict(m) for m in request["messages"]]})
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]


class ScriptedClient:
    def __init__(self, *script):
        self.chat = ScriptedChat(script)


TOOLS = [retrieve_payment_status, retrieve_payment_date]
QUESTION = [{"role": "user", "content": "What is the status and date of T1001?"}]


def test_loop_feeds_every_kind_of_bad_call_back_and_finishes():
    client = ScriptedClient(
        tool_response(
            ("a00000001", "retrieve_payment_status", '{"transaction_id": "T1001"}'),   # fine
            ("a00000002", "retrieve_payment_date", {"transaction_id": "T1001"}),      # fine, dict arguments
            ("a00000003", "get_weather", '{"city": "Paris"}'),                         # unknown function
            ("a00000004", "retrieve_payment_status", '{"transaction_id": T1001'),      # not JSON
            ("a00000005", "retrieve_payment_status", '{"transaction_id": 1001}'),      # fails the schema
            ("a00000006", "retrieve_payment_date", '{"transaction_id": "T9999"}'),     # function raises
        ),
        text_response("T1001 is Paid; it was paid on 2021-10-05."),
    )
    run = run_tools(client, "mistral-large-latest", QUESTION, TOOLS, verbose=False)
    assert run.stopped == "answered" and run.answer == "T1001 is Paid; it was paid on 2021-10-05."
    assert len(run.turns) == 2 and run.tool_calls == 6 and run.errors_fed_back == 4
    results = {r.content for r in run.turns[0].results if not r.error}
    assert results == {'{"status": "Paid"}', '{"date": "2021-10-05"}'}
    errors = [json.loads(r.content)["error"] for r in run.turns[0].results if r.error]
    assert errors[0].startswith("unknown function 'get_weather'; available: retrieve_payment_status")
    assert errors[1].startswith("arguments are not valid JSON")
    assert errors[2].startswith("arguments do not match the schema: transaction_id: Input should be a valid string")
    assert errors[3] == "LookupError: no transaction T9999"

    # the second request carried the assistant's calls and one tool message per call, ids matched
    sent = client.chat.requests[1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant"] + ["tool"] * 6
    assert [m["tool_call_id"] for m in sent[2:]] == [f"a0000000{i}" for i in range(1, 7)]
    assert sent[1]["tool_calls"][1]["function"]["arguments"] == '{"transaction_id": "T1001"}'
    assert client.chat.requests[0]["parallel_tool_calls"] is True
    assert "⚠️ error fed back" in run.transcript() and "model answers" in run.transcript()


def test_max_turns_guard_stops_a_model_that_never_answers():
    client = ScriptedClient(tool_response(("b00000001", "retrieve_payment_status", '{"transaction_id": "T1002"}')))
    run = run_tools(client, "m", QUESTION, TOOLS, max_turns=3, verbose=False)
    assert run.stopped == "max_turns" and run.answer is None
    assert len(client.chat.requests) == 3 and run.tool_calls == 3 and run.errors_fed_back == 0
    assert "max_turns" in run.transcript()


def test_tool_choice_applies_to_the_first_turn_only():
    client = ScriptedClient(tool_response(("c00000001", "retrieve_payment_status", '{"transaction_id": "T1001"}')),
                            text_response("Paid."))
    run_tools(client, "m", QUESTION, TOOLS, tool_choice="any", verbose=False)
    assert [r["tool_choice"] for r in client.chat.requests] == ["any", "auto"]

    named = ScriptedClient(text_response("ok"))
    run_tools(named, "m", QUESTION, TOOLS, tool_choice="retrieve_payment_date", verbose=False)
    assert named.chat.requests[0]["tool_choice"] == {"type": "function",
                                                      "function": {"name": "retrieve_payment_date"}}

    none = ScriptedClient(text_response("I cannot look that up."))
    run = run_tools(none, "m", QUESTION, TOOLS, tool_choice="none", verbose=False)
    assert none.chat.requests[0]["tool_choice"] == "none" and run.tool_calls == 0 and len(run.turns) == 1


def test_transcript_is_printed_per_turn(capsys):
    client = ScriptedClient(tool_response(("d00000001", "retrieve_payment_status", '{"transaction_id": "T1002"}')),
                            text_response("Pending."))
    run_tools(client, "m", QUESTION, TOOLS)
    out = capsys.readouterr().out
    assert 'turn 1 · model asks for 1 tool call(s): retrieve_payment_status({"transaction_id": "T1002"})' in out
    assert 'retrieve_payment_status → {"status": "Pending"}' in out
    assert "turn 2 · model answers (stop): 'Pending.'" in out


def test_toolbox_limits_and_argument_checks():
    box = Toolbox([list_payments])
    ok = box.call("list_payments", {"status": "Paid", "limit": 2})
    assert not ok.error and ok.content == "[]"
    bad = box.call("list_payments", {"status": "Lost"})
    assert bad.error and "status" in json.loads(bad.content)["error"]
    extra = box.call("list_payments", {"status": "Paid", "colour": "red"})
    assert extra.error and "colour" in json.loads(extra.content)["error"]
    with pytest.raises(ValueError, match="max_turns"):
        run_tools(ScriptedClient(text_response("x")), "m", QUESTION, box, max_turns=0, verbose=False)


def test_duplicate_tool_names_and_unknown_tool_choice_are_clear_errors():
    def retrieve_payment_status_v2(transaction_id: str) -> dict:
        """Another status lookup."""
        return {}

    with pytest.raises(ToolSpecError, match="Two tools are named 'retrieve_payment_status'"):
        Toolbox([retrieve_payment_status, functools.partial(retrieve_payment_status)])
    with pytest.raises(ToolSpecError, match="Two tools are named"):
        Toolbox([retrieve_payment_status, tool_named(retrieve_payment_status_v2, "retrieve_payment_status")])
    client = ScriptedClient(text_response("never sent"))
    for choice in ("retrieve_payment_sttaus", {"type": "function", "function": {"name": "nope"}}):
        with pytest.raises(ToolSpecError, match="names no tool.*retrieve_payment_status, retrieve_payment_date"):
            run_tools(client, "m", QUESTION, TOOLS, tool_choice=choice, verbose=False)
    assert client.chat.requests == [], "nothing is sent when tool_choice is wrong"
    dict_choice = ScriptedClient(text_response("ok"))
    run_tools(dict_choice, "m", QUESTION, TOOLS, verbose=False,
              tool_choice={"type": "function", "function": {"name": "retrieve_payment_date"}})
    assert dict_choice.chat.requests[0]["tool_choice"] == {"type": "function",
                                                           "function": {"name": "retrieve_payment_date"}}


def tool_named(fn, name):
    fn.__name__ = name
    return fn


def test_content_text_reads_strings_chunks_thinking_and_messages():
    reasoning = [ThinkChunk(thinking=[TextChunk(text="The user wants T1001. ")]), TextChunk(text="T1001 is "),
                 TextChunk(text="Paid.")]
    assert content_text(reasoning) == "T1001 is Paid."
    assert content_text(reasoning, thinking=True) == "The user wants T1001. T1001 is Paid."
    assert content_text(AssistantMessage(role="assistant", content=reasoning)) == "T1001 is Paid."
    assert content_text({"role": "assistant", "content": [{"type": "text", "text": "a"},
                                                          {"type": "thinking", "thinking": [{"type": "text",
                                                                                             "text": "hm"}]},
                                                          {"type": "text", "text": "b"}]}) == "ab"
    assert content_text("plain") == "plain"
    assert content_text(None) == "" and content_text(AssistantMessage(role="assistant")) == ""


def test_a_reasoning_models_chunked_reply_reads_as_its_answer_everywhere_the_course_reads_text():
    """A whole ChatCompletionResponse as a reasoning model sends it (thinking, then text chunks, SDK types): the one
    function the notebooks read replies through gives the answer; str operations on `.content` itself would fail."""
    import json as _json

    from helpers.citations import parse_cited
    from helpers.course.verdicts import judge

    cited = '{"answerable": true, "answer": "Within 120 days.", "sources": ["c004"]}'
    reply = ChatCompletionResponse(
        id="r1", object="chat.completion", model="magistral-small-latest", created=0,
        usage=UsageInfo(prompt_tokens=9, completion_tokens=7, total_tokens=16),
        choices=[ChatCompletionChoice(index=0, finish_reason="stop", message=AssistantMessage(role="assistant", content=[
            ThinkChunk(thinking=[TextChunk(text="The handbook says 120 days; cite c004.")]),
            TextChunk(text=cited[:20]), TextChunk(text=cited[20:])]))])
    content = reply.choices[0].message.content
    assert isinstance(content, list) and isinstance(content[0], ThinkChunk)
    with pytest.raises(AttributeError):
        content.strip()  # what a notebook's `message.content.strip()` would meet
    text = content_text(reply.choices[0].message)
    assert text == cited and "120 days; cite" not in text  # the thinking is not the answer
    assert _json.loads(text)["sources"] == ["c004"]
    assert parse_cited(text) == ("Within 120 days.", ["c004"], True, True)
    assert judge(reply, "120 days").kind == "right"
    assert content_text(reply.choices[0].message, thinking=True).startswith("The handbook says 120 days")
