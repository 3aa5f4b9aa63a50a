"""The conformance suite's checks of La Plateforme's request rules (issue 30): message order, unknown fields, what each
accepted field does, published ranges, the unknown-model answer, streaming with tools, the embedding dimension.

Each check says what the server did, so against vLLM or another server the table shows where it parts from La
Plateforme. Checks named `4xx: …` send a request La Plateforme refuses; `API: …` probe a La Plateforme-only feature
(scripts/vllm_requests.py records neither for vLLM). Requests the SDK cannot send (unknown fields) go as raw HTTP.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from mistralai.client.errors import MistralError


class CheckFailed(AssertionError):
    """A check saw something that breaks the API contract."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def _tool(name: str, description: str) -> dict:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": {"transaction_id": {"type": "string", "description": "e.g. T1001"}},
        "required": ["transaction_id"]}}}


TOOLS = [_tool("retrieve_payment_status", "Get the payment status of a transaction."),
         _tool("retrieve_payment_date", "Get the date a transaction was paid.")]
ASK_TOOL = [{"role": "user", "content": "What's the status of my transaction T1001?"}]
ASK_TEXT = [{"role": "user", "content": "Name one colour of the French flag."}]
CALL = {"role": "assistant", "content": "", "tool_calls": [{"id": "D681PevKs", "type": "function", "function": {
    "name": "retrieve_payment_status", "arguments": json.dumps({"transaction_id": "T1001"})}}]}
RESULT = {"role": "tool", "name": "retrieve_payment_status", "tool_call_id": "D681PevKs",
          "content": json.dumps({"transaction_id": "T1001", "status": "Paid"})}


def _raw(t: Any, path: str, body: dict | None = None) -> Any:
    """A request the SDK would not send as is (an unknown field), to the SDK client's own server and key.

    A 429 is waited out as its Retry-After asks (up to 5 tries), as the SDK's retries would: a low tier allows
    about one request a second, and a refused field is what is being checked, not the rate."""
    import time

    import httpx

    config = t.client.sdk_configuration
    security = config.security() if callable(config.security) else config.security  # a key given as a callable
    key = getattr(security, "api_key", None)
    key = key() if callable(key) else key
    headers = {"Authorization": f"Bearer {key}"} if isinstance(key, str) else {}
    url = config.get_server_details()[0].rstrip("/") + path
    for _ in range(5):
        answer = (httpx.get(url, headers=headers, timeout=60) if body is None
                  else httpx.post(url, json=body, headers=headers, timeout=60))
        if answer.status_code != 429:
            break
        time.sleep(min(10.0, float(answer.headers.get("retry-after") or 1)))
    return answer


def _refused_with(t: Any, status: int, words: str, **request: Any) -> str:
    args = {"model": t.model, "messages": ASK_TEXT, "max_tokens": 2, **request}
    try:
        t.client.chat.complete(**args)
    except MistralError as exc:
        _require(exc.status_code == status, f"status {exc.status_code}; La Plateforme answers {status}: "
                                            f"{str(exc.body)[:100]}")
        _require(words.lower() in str(exc.body).lower(), f"{status}, but the body does not say {words!r}: "
                                                         f"{str(exc.body)[:100]}")
        return f"{exc.status_code}: {str(exc.body)[:90]}"
    raise CheckFailed(f"answered 200; La Plateforme answers {status} ({words})")


def order(status: int, words: str, messages: list[dict]) -> Callable[[Any], str]:
    """A conversation La Plateforme refuses (mistral-common's validator, or the API's reported stricter rule)."""
    return lambda t: _refused_with(t, status, words, messages=messages)


def accepted(messages: list[dict]) -> Callable[[Any], str]:
    """A conversation La Plateforme accepts (mistral-common's validator allows it): a 200 with an answer."""
    def check(t: Any) -> str:
        r = t.client.chat.complete(model=t.model, messages=messages, max_tokens=t.text_tokens, temperature=0.0)
        _require(r.usage.completion_tokens > 0, f"no answer: {r.choices[0]}")
        return f"answered ({r.usage.completion_tokens} tokens)"
    return check


def unknown_field(loc: list, **fields: Any) -> Callable[[Any], str]:
    """A field Mistral's schema does not have: La Plateforme's 422 with detail[0].type extra_forbidden at `loc`."""
    def check(t: Any) -> str:
        body = {"model": t.model, "messages": ASK_TEXT, "max_tokens": 2, **fields}
        r = _raw(t, "/v1/chat/completions", body)
        _require(r.status_code == 422, f"status {r.status_code}; La Plateforme answers 422 extra_forbidden")
        message = r.json().get("message")
        detail = message.get("detail") if isinstance(message, dict) else r.json().get("detail")
        _require(isinstance(detail, list) and detail and detail[0].get("type") == "extra_forbidden"
                 and list(detail[0].get("loc", [])) == loc,
                 f"422, but not La Plateforme's shape (message.detail[0]: extra_forbidden at {loc}): {r.text[:120]}")
        return f"422 extra_forbidden at {loc}" + ("" if isinstance(message, dict) else " (detail at the top level)")
    return check


def check_penalties(t: Any) -> str:
    ask = [{"role": "user", "content": "Repeat: payment payment payment payment payment"}]

    def answer(penalty: float) -> str:
        r = t.client.chat.complete(model=t.model, messages=ask, max_tokens=24, temperature=0.0,
                                   frequency_penalty=penalty, presence_penalty=penalty / 2)
        return str(r.choices[0].message.content)
    try:
        plain, penalised = answer(0.0), answer(2.0)
    except MistralError as exc:
        _require(400 <= exc.status_code < 500 and "penalty" in str(exc.body), f"status {exc.status_code} without "
                                                                                "naming the field")
        return f"refused by name ({exc.status_code}): the server does not apply penalties"
    _require(plain != penalised, f"frequency_penalty=2.0 changed nothing in a greedy answer: {plain[:60]!r}")
    return f"applied: {plain[:30]!r} → {penalised[:30]!r}"


def check_safe_prompt(t: Any) -> str:
    def prompt_tokens(safe: bool) -> int:
        return t.client.chat.complete(model=t.model, messages=ASK_TEXT, max_tokens=1,
                                      safe_prompt=safe).usage.prompt_tokens
    plain, safe = prompt_tokens(False), prompt_tokens(True)
    _require(safe - plain >= 10, f"safe_prompt=True added {safe - plain} prompt tokens; La Plateforme prepends its "
                                 "34-word safety system prompt")
    return f"{safe - plain} prompt tokens added (the safety system prompt)"


def check_guardrails(t: Any) -> str:
    try:
        t.client.chat.complete(model=t.model, messages=ASK_TEXT, max_tokens=2, guardrails=[{"block_on_error": True}])
    except MistralError as exc:
        _require(400 <= exc.status_code < 500 and "guardrails" in str(exc.body),
                 f"status {exc.status_code} without naming guardrails: {str(exc.body)[:80]}")
        return f"refused by name ({exc.status_code}): the server has no moderation"
    return "accepted (the server says it moderates)"


def check_streamed_calls(t: Any) -> str:
    out = []
    for choice in ("auto", "required"):
        request = dict(model=t.model, messages=ASK_TOOL, tools=TOOLS, tool_choice=choice, max_tokens=t.max_tokens,
                       temperature=0.0, random_seed=0)
        whole = t.client.chat.complete(**request).choices[0].message
        calls, text = [], []
        for event in t.client.chat.stream(**request):
            delta = event.data.choices[0].delta
            text.append(delta.content if isinstance(delta.content, str) else "")
            calls += [(c.function.name, json.loads(c.function.arguments)) for c in delta.tool_calls or []]
        expected = [(c.function.name, json.loads(c.function.arguments)) for c in whole.tool_calls or []]
        _require(calls == expected, f"tool_choice={choice!r}: streamed calls {calls} ≠ non-streamed {expected}")
        _require(not (expected and "tool_call" in "".join(text)), f"tool_choice={choice!r}: call markup streamed "
                                                                   f"as text: {''.join(text)[:60]!r}")
        out.append(f"{choice}: {len(calls)} call(s) both ways")
    return "; ".join(out)


def _vectors(t: Any, **fields: Any) -> Any:
    return _raw(t, "/v1/embeddings", {"model": t.embed_model, "input": ["a card payment"], **fields})


def check_base64(t: Any) -> str:
    floats = _vectors(t).json()["data"][0]["embedding"]
    r = _vectors(t, encoding_format="base64")
    if 400 <= r.status_code < 500:
        _require("encoding_format" in r.text, f"{r.status_code} without naming encoding_format")
        return f"refused by name ({r.status_code})"
    value = r.json()["data"][0]["embedding"]
    _require(isinstance(value, str), f"encoding_format='base64' but the embedding came back as {type(value).__name__}")
    _require(len(base64.b64decode(value)) == 4 * len(floats), "base64 does not hold one float32 per dimension")
    return f"{len(floats)} float32 values, base64-encoded"


def check_output_dimension(t: Any) -> str:
    r = _vectors(t, output_dimension=8)
    if 400 <= r.status_code < 500:
        _require("output_dimension" in r.text, f"{r.status_code} without naming output_dimension")
        return f"refused by name ({r.status_code}): this model has one fixed dimension"
    got = len(r.json()["data"][0]["embedding"])
    _require(got == 8, f"output_dimension=8 accepted but the vectors have {got} dimensions (ignored silently)")
    return "vectors of 8 dimensions, as asked"


def check_dimension_listed(t: Any) -> str:
    size = len(_vectors(t).json()["data"][0]["embedding"])
    card = next((c for c in _raw(t, "/v1/models").json().get("data", []) if c.get("id") == t.embed_model), None)
    listed = (card or {}).get("embedding_dimension")
    if listed is None:
        return f"not listed (La Plateforme's model cards have no dimension either); the vectors have {size}"
    _require(listed == size, f"/v1/models says {listed} dimensions, the vectors have {size}")
    return f"/v1/models: embedding_dimension {listed}, as the vectors"


def check_unknown_model(t: Any) -> str:
    return _refused_with(t, 400, "invalid model", model="no-such-model")


def check_function_name(t: Any) -> str:
    bad = [{"type": "function", "function": {**TOOLS[0]["function"], "name": "payments.status"}}]
    try:
        t.client.chat.complete(model=t.model, messages=ASK_TOOL, tools=bad, max_tokens=2)
    except MistralError as exc:
        _require(400 <= exc.status_code < 500, f"status {exc.status_code}")
        return f"{exc.status_code}: the name breaks ^[a-zA-Z0-9_-]{{1,64}}$"
    raise CheckFailed("a function named 'payments.status' was accepted; La Plateforme requires ^[a-zA-Z0-9_-]{1,64}$")


RULE_CHECKS: dict[str, Callable[[Any], Any]] = {
    "4xx: user right after tool": order(400, "Unexpected role 'user' after role 'tool'",
                                        [*ASK_TOOL, CALL, RESULT, {"role": "user", "content": "And T1002?"}]),
    "4xx: ends with an assistant turn": order(400, "last role", [*ASK_TEXT, {"role": "assistant", "content": "Red"}]),
    "4xx: tool right after user": order(400, "Unexpected role 'tool' after role 'user'", [*ASK_TOOL, RESULT]),
    "4xx: empty assistant message": order(400, "content or tool_calls",
                                          [*ASK_TEXT, {"role": "assistant", "content": None}, *ASK_TEXT]),
    "accepts an assistant greeting first": accepted([{"role": "assistant", "content": "Hello! Ask me anything."},
                                                     *ASK_TEXT]),
    "accepts a system message after a user turn": accepted([*ASK_TEXT, {"role": "system", "content": "Be brief."},
                                                            {"role": "user", "content": "Please answer."}]),
    "4xx: max_completion_tokens (422)": unknown_field(["body", "max_completion_tokens"], max_completion_tokens=5),
    "4xx: name on a user message (422)": unknown_field(["body", "messages", 0, "user", "name"],
                                                       messages=[{**ASK_TEXT[0], "name": "ann"}]),
    "4xx: temperature above 1.5": lambda t: _refused_with(t, 422, "temperature", temperature=1.6),
    "4xx: function name pattern": check_function_name,
    "4xx: unknown model is 400 invalid_model": check_unknown_model,
    "penalties applied": check_penalties,
    "API: safe_prompt": check_safe_prompt,
    "API: guardrails": check_guardrails,
    "streamed tool calls = non-streamed": check_streamed_calls,
    "embeddings: base64": check_base64,
    "embeddings: output_dimension": check_output_dimension,
    "embeddings: dimension listed": check_dimension_listed,
}
