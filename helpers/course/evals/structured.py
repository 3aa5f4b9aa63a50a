"""Score a model's structured output: does it parse as JSON, is it valid against the schema, are the values right.

Used by notebook 09 (function calling and JSON on your own model), to compare prompt-only answers with
constrained ones over the same requests. Validation goes through pydantic models, the same ones the course
builds tool specs from (`helpers.tools.arguments_model`), so "schema-valid" means what your code would accept.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)


def extract_json(text: str | None) -> Any:
    """The JSON value in a reply, as a careful client would look for it; raises ValueError when there is none.

    Tries, in order: the whole text; a `<tool_call>…</tool_call>` block (SmolLM2's tool format); the span from
    the first `{` to the last `}` (a JSON object wrapped in prose or a code fence).
    """
    text = (text or "").strip()
    candidates = [text, *_TAGGED.findall(text)]
    if "{" in text and "}" in text:
        candidates.append(text[text.index("{"): text.rindex("}") + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    raise ValueError(f"no JSON value in {text[:60]!r}")


@dataclass
class Scored:
    """One reply, scored: what came back and the four yes/no questions asked of it."""

    task: str  # "tool call" or "JSON extraction"
    mode: str  # "prompt-only" or "constrained"
    request: str
    output: str
    parses: bool  # the reply holds a JSON value
    schema_valid: bool  # ... which validates against the schema (for a tool call: a known function's arguments)
    right_function: bool | None  # tool calls only: the function we expected
    right_values: bool  # the values we expected (transaction id; or every extracted field)
    completion_tokens: int
    seconds: float

    def row(self) -> dict[str, Any]:
        return asdict(self)


def _as_text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def score_tool_reply(message: Any, arguments: dict[str, type[BaseModel]], expected_function: str,
                     expected_args: dict[str, Any]) -> tuple[str, bool, bool, bool, bool]:
    """(output, parses, schema_valid, right_function, right_values) for a chat reply that should call a tool.

    `arguments` maps each tool's name to the pydantic model of its arguments. A reply counts when it holds a
    tool call, or — prompt-only — JSON of the form {"name": …, "arguments": {…}} in its text.
    """
    calls = list(getattr(message, "tool_calls", None) or [])
    if calls:
        name, raw = calls[0].function.name, _as_text(calls[0].function.arguments)
        output, parses = f"{name}({raw})", True
        try:
            args = json.loads(raw)
        except ValueError:
            args, parses = None, False
    else:
        output = str(getattr(message, "content", "") or "")
        try:
            value = extract_json(output)
        except ValueError:
            return output, False, False, False, False
        parses = True
        if not (isinstance(value, dict) and isinstance(value.get("name"), str)):
            return output, True, False, False, False
        name, args = value["name"], value.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                return output, True, False, name == expected_function, False
    valid = False
    if parses and name in arguments:
        try:
            arguments[name].model_validate(args)
            valid = True
        except ValidationError:
            valid = False
    right_values = valid and all(args.get(k) == v for k, v in expected_args.items())
    return output, parses, valid, name == expected_function, right_values


def score_json_reply(content: str | None, model: type[BaseModel], expected: dict[str, Any]) -> tuple[bool, bool, bool]:
    """(parses, schema_valid, right_values) for a reply that should be a JSON object following `model`'s schema."""
    try:
        value = extract_json(content)
    except ValueError:
        return False, False, False
    try:
        parsed = model.model_validate(value)
    except ValidationError:
        return True, False, False
    got = parsed.model_dump()
    return True, True, all(_same(got.get(k), v) for k, v in expected.items())


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) < 1e-6
        except (TypeError, ValueError):
            return False
    return a == b


class Stopwatch:
    """`with Stopwatch() as sw: ...` then `sw.seconds`: wall time of one request."""

    def __enter__(self) -> Stopwatch:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0


def rates(rows: list[Scored]) -> dict[str, float | int | None]:
    """The shares and means for a group of scored replies (None for a share that does not apply)."""
    n = len(rows)
    if n == 0:
        raise ValueError("no replies to summarise")
    fn = [r.right_function for r in rows if r.right_function is not None]
    seconds = sorted(r.seconds for r in rows)
    return {
        "n": n,
        "parses_json_rate": round(sum(r.parses for r in rows) / n, 4),
        "schema_valid_rate": round(sum(r.schema_valid for r in rows) / n, 4),
        "right_function_rate": round(sum(fn) / len(fn), 4) if fn else None,
        "right_values_rate": round(sum(r.right_values for r in rows) / n, 4),
        "mean_completion_tokens": round(sum(r.completion_tokens for r in rows) / n, 2),
        "latency_p50_s": round(seconds[(n - 1) // 2], 3),
        "latency_mean_s": round(sum(seconds) / n, 3),
    }


def call_is(function: str, **expected: Any):
    """A verdict rule (for `tally.check`): the reply is a call `{"name": …, "arguments": {…}}` to `function` with
    these argument values — text, a `<tool_call>` block or an SDK tool call alike."""

    def rule(text: str) -> tuple[bool, str]:
        try:
            value = extract_json(text)
        except ValueError:
            return False, "holds no JSON call"
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            return False, "JSON, but not a call (no function name)"
        args = value.get("arguments")
        args = json.loads(args) if isinstance(args, str) else args
        ok = value["name"] == function and isinstance(args, dict) and all(
            args.get(k) == v for k, v in expected.items())
        return ok, f"calls {value['name']}({json.dumps(args)})" + ("" if ok else f", not {function}{expected}")

    return rule


def call_text(call: Any) -> str:
    """An SDK tool call as the JSON text a model writes: {"name": …, "arguments": {…}} (for a verdict)."""
    args = call.function.arguments
    return json.dumps({"name": call.function.name, "arguments": json.loads(args) if isinstance(args, str) else args})


def tool_answer_rule(result: dict[str, Any], answer: Any,
                     statuses: tuple[str, ...] = ("Paid", "Pending", "Failed", "Refunded")) -> dict[str, Any]:
    """`tally.check(answer, **tool_answer_rule(result, answer))`: the final answer should pass on what the tool said.

    A status from the tool: right when the answer says it (and no other status, nor the tool's raw markup). An error
    from the tool: wrong when the answer echoes the `<tool_response>` markup back, else unchecked, with what to read."""
    from helpers.course.verdicts import answer_text

    told = result.get("status")
    if told:
        return {"expect": told, "reject": [s for s in statuses if s != told] + ["<tool_response>"]}
    if "<tool_response>" in answer_text(answer)[0]:
        return {"expect": lambda _: (False, "echoes the tool's <tool_response> markup instead of answering"),
                "definitive": True}
    return {"look_for": "does it pass on the tool's error instead of inventing a status?"}


def record_rule(expected: dict[str, Any], model: type[BaseModel]):
    """A verdict rule: the reply is a JSON object valid against `model` with the `expected` values."""

    def rule(text: str) -> tuple[bool, str]:
        parses, valid, right = score_json_reply(text, model, expected)
        how = "right values" if right else "schema-valid, wrong values" if valid else \
            "JSON, not schema-valid" if parses else "not JSON"
        return right, how

    return rule


def schema_valid_share(rows: list[dict[str, Any]], model: type[BaseModel]) -> dict[str, float]:
    """Per mode ("free", "constrained"), the share of `rows[i]["reply"]` texts that `model`'s schema accepts."""
    modes = sorted({r["mode"] for r in rows})
    return {m: round(sum(score_json_reply(r["reply"], model, {})[1] for r in rows if r["mode"] == m)
                     / sum(r["mode"] == m for r in rows), 4) for m in modes}
