"""Score a model's structured output: does it parse as JSON, is it valid against the schema, are the values right.

Used by notebook 09 (function calling and JSON on your own model), to compare prompt-only answers with
constrained ones over the same requests. Validation goes through pydantic models, the same ones the course
builds tool specs from (`helpers.tools.arguments_model`), so "schema-valid" means what your code would accept.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ..verdicts import ICONS

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
        if ok or value["name"] != function or not isinstance(args, dict):
            return ok, f"calls {value['name']}({json.dumps(args)})" + ("" if ok else f", not {function}")
        return ok, "; ".join(f"{k} {args.get(k)!r}, not {v!r}" for k, v in expected.items() if args.get(k) != v)

    return rule


def call_text(call: Any) -> str:
    """An SDK tool call as the JSON text a model writes: {"name": …, "arguments": {…}} (for a verdict)."""
    args = call.function.arguments
    return json.dumps({"name": call.function.name, "arguments": json.loads(args) if isinstance(args, str) else args})


def record_rule(expected: dict[str, Any], model: type[BaseModel]):
    """A verdict rule: the reply is a JSON object valid against `model` with the `expected` values."""

    def rule(text: str) -> tuple[bool, str]:
        parses, valid, right = score_json_reply(text, model, expected)
        if valid and not right:
            return False, "schema-valid, wrong " + ", ".join(
                f"{k} {got!r} (not {want!r})" for k, (got, want) in wrong_fields(text, model, expected).items())
        return right, "right values" if right else "JSON, not schema-valid" if parses else "not JSON"

    return rule


def wrong_fields(text: str, model: type[BaseModel], expected: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{field: (what the reply said, what was expected)} for each wrong value of a schema-valid reply."""
    got = model.model_validate(extract_json(text)).model_dump()
    return {k: (got.get(k), v) for k, v in expected.items() if not _same(got.get(k), v)}


def verdict_cell(verdict: Any, width: int = 64) -> str:
    """A table cell for one judged reply: the verdict's icon (✓ right, ✗ wrong, ✂ cut off), then the reply's start."""
    text = " ".join(verdict.answer.split())
    return f"{ICONS[verdict.kind]} {text[:width]}{'…' if len(text) > width else ''}"


def free_vs_constrained(rows: list[dict[str, Any]], model: type[BaseModel]) -> str:
    """What the free-vs-constrained table shows, counted from its rows (`mode`, `reply`, `expected`, `verdict`)."""
    lines, valid = [], {}
    for mode in ("free", "constrained"):
        mine = [r for r in rows if r["mode"] == mode]
        why: Counter[str] = Counter()
        prose = ""  # the first reply that holds no JSON, shown whole: the table cuts it at its cell's width
        for r in mine:
            parses, ok, _ = score_json_reply(r["reply"], model, {})
            valid[mode] = valid.get(mode, 0) + ok
            if r["verdict"].ok:
                continue
            if ok:  # each wrong field, named with its first example: "wrong transaction_id ('1001', not 'T1001')"
                for k, (got, want) in wrong_fields(r["reply"], model, r["expected"]).items():
                    first = next((w for w in why if w.startswith(f"wrong {k} (")), f"wrong {k} ({got!r}, not {want!r})")
                    why[first] += 1
            else:
                reason = ("cut off at max_tokens" if r["verdict"].kind == "cut" else
                          "JSON, not schema-valid" if parses else "not JSON")
                why[reason] += 1
                prose = prose or (" ".join(r["reply"].split()) if reason == "not JSON" else "")
        lines.append(f"{mode:>11}: {valid[mode]} of {len(mine)} schema-valid, {sum(r['verdict'].ok for r in mine)} "
                     "right" + "".join(f"; {reason}: {n}" for reason, n in why.items())
                     + (f"\n{'':>13}not JSON, whole: {prose[:200]!r}" if prose else ""))
    constrained = [r for r in rows if r["mode"] == "constrained"]
    wrong = sum(not r["verdict"].ok for r in constrained)
    if valid["constrained"] == len(constrained):
        lines.append(f"So the grammar fixed the shape (every constrained reply parses into the type, {valid['free']} "
                     f"free one{'s' * (valid['free'] != 1)}), " + (f"not the values: {wrong} of {len(constrained)} "
                     "constrained records hold a wrong value." if wrong else "and here every value is right too."))
    return "\n".join(lines)


def schema_valid_share(rows: list[dict[str, Any]], model: type[BaseModel]) -> dict[str, float]:
    """Per mode ("free", "constrained"), the share of `rows[i]["reply"]` texts that `model`'s schema accepts."""
    modes = sorted({r["mode"] for r in rows})
    return {m: round(sum(score_json_reply(r["reply"], model, {})[1] for r in rows if r["mode"] == m)
                     / sum(r["mode"] == m for r in rows), 4) for m in modes}
