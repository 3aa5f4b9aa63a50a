"""Check that a server speaks the Mistral chat/embeddings API the way the unmodified `mistralai` SDK expects.

Point it at any Mistral-compatible URL — the course endpoint, vLLM, La Plateforme — and read a pass/fail table:

    python -m helpers.endpoint.conformance http://127.0.0.1:8000 --model mistral-small-latest --embed-model mistral-embed
    MISTRAL_API_KEY=... python -m helpers.endpoint.conformance https://api.mistral.ai --model mistral-small-latest

Every check goes through `mistralai.client.Mistral` as a learner's code would (raw HTTP only for what the SDK cannot
send); a check fails with the reason (what came back, or the SDK's exception), so the table says where a server parts
from La Plateforme. Used by notebook 10 (serving and the decision matrix).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from mistralai.client.errors import MistralError
from pydantic import BaseModel, ValidationError

from ..catalog import cached_tokens
from ..tools import content_text  # a reply's text: a str, or a reasoning model's chunks
from .conformance_rules import ASK_TEXT, ASK_TOOL, RULE_CHECKS, TOOLS, CheckFailed, _require


class PaymentArgs(BaseModel):  # both tools take the same argument
    transaction_id: str


class Payment(BaseModel):
    """The JSON answer the json_schema and chat.parse checks ask for."""

    transaction_id: str
    status: Literal["Paid", "Pending", "Failed"]


ARGS = {"retrieve_payment_status": PaymentArgs, "retrieve_payment_date": PaymentArgs}


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: its name, passed or not, what was seen, and how long it took."""

    check: str
    passed: bool  # the API contract held (well-formed: the shape the request asked for)
    detail: str
    seconds: float
    right: bool | None = None  # for calls and JSON: did the content say what the request asked (None: not judged)

    @property
    def verdict(self) -> str:
        """'right', 'well-formed only' (the shape held, the content is wrong) or '' (content not judged)."""
        if self.right is None:
            return ""
        return "right" if self.right else "well-formed only"


@dataclass
class Target:
    """What the checks talk to: an SDK client, the chat and embedding model names, and a reply budget."""

    client: Any
    model: str
    embed_model: str
    max_tokens: int = 40  # for the structured checks (tool calls, JSON): room for a short complete answer
    text_tokens: int = 12  # for the free-text checks: enough to see text come back


def _calls(message: Any) -> list:
    return list(getattr(message, "tool_calls", None) or [])


def _args_json(call: Any) -> str:
    args = call.function.arguments
    return args if isinstance(args, str) else json.dumps(args)


def _valid_call(call: Any) -> str:
    name = call.function.name
    _require(name in ARGS, f"called {name!r}, which is not among the tools sent")
    try:
        ARGS[name].model_validate_json(_args_json(call))
    except ValidationError as exc:
        raise CheckFailed(f"{name} arguments {_args_json(call)[:80]!r} fail the tool's schema: "
                          f"{exc.errors()[0]['msg']}") from None
    return f"{name}({_args_json(call)})"


def _asked_id(call: Any) -> bool:
    """Content, not shape: the call carries the transaction id the question named (T1001)."""
    try:
        return json.loads(_args_json(call)).get("transaction_id") == "T1001"
    except (ValueError, AttributeError):
        return False


# ---------------------------------------------------------------- the checks
def check_chat(t: Target) -> str:
    r = t.client.chat.complete(model=t.model, messages=ASK_TEXT, max_tokens=t.text_tokens, temperature=0.0)
    choice = r.choices[0]
    _require(content_text(choice.message).strip() != "", f"empty content: {choice.message.content!r}")
    _require(choice.finish_reason in ("stop", "length"), f"finish_reason {choice.finish_reason!r}")
    _require(r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0, f"usage {r.usage}")
    return f"{r.usage.completion_tokens} tokens, finish_reason {choice.finish_reason}"


def check_max_tokens(t: Target) -> str:
    r = t.client.chat.complete(model=t.model, messages=[{"role": "user", "content": "Count from 1 to 50."}],
                               max_tokens=3, temperature=0.0)
    n = r.usage.completion_tokens
    _require(n <= 3, f"asked for at most 3 tokens, got {n}")
    _require(r.choices[0].finish_reason in ("length", "stop"), f"finish_reason {r.choices[0].finish_reason!r}")
    return f"{n} tokens, finish_reason {r.choices[0].finish_reason}"


def check_seed(t: Target) -> str:
    def once() -> str:
        reply = t.client.chat.complete(model=t.model, messages=[{"role": "user", "content": "Invent a word."}],
                                       max_tokens=8, temperature=1.0, random_seed=1234).choices[0].message
        return content_text(reply)
    first, second = once(), once()
    _require(first == second, f"same random_seed, different answers: {first!r} vs {second!r}")
    return f"same answer twice at temperature 1.0: {first!r}"


def check_stream(t: Target) -> str:
    pieces, finish = [], None
    for event in t.client.chat.stream(model=t.model, messages=ASK_TEXT, max_tokens=t.text_tokens,
                                      temperature=0.0):
        choice = event.data.choices[0]
        if choice.delta.content:  # text, or a list of chunks (a reasoning model's thinking, then text)
            pieces.append(content_text(choice.delta.content))
        finish = choice.finish_reason or finish
    _require("".join(pieces).strip() != "", f"no text streamed ({len(pieces)} chunks)")
    _require(finish in ("stop", "length"), f"the stream never said why it ended (finish_reason {finish!r})")
    return f"{len(pieces)} chunks, finish_reason {finish}"


def check_tool_auto(t: Target) -> str:
    m = t.client.chat.complete(model=t.model, messages=ASK_TOOL, tools=TOOLS, tool_choice="auto",
                               max_tokens=t.max_tokens, temperature=0.0).choices[0].message
    calls = _calls(m)
    if calls:
        return "called " + ", ".join(_valid_call(c) for c in calls)
    _require(isinstance(m.content, (str, list)), f"neither a tool call nor text: {m}")
    return f"answered in text: {content_text(m)[:40]!r}"


def check_tool_required(t: Target) -> str:
    r = t.client.chat.complete(model=t.model, messages=ASK_TOOL, tools=TOOLS, tool_choice="required",
                               max_tokens=t.max_tokens, temperature=0.0)
    calls = _calls(r.choices[0].message)
    _require(bool(calls), f"tool_choice='required' but no tool call; content {r.choices[0].message.content!r:.80}")
    _require(r.choices[0].finish_reason == "tool_calls", f"finish_reason {r.choices[0].finish_reason!r}")
    return _valid_call(calls[0]), _asked_id(calls[0])


def check_tool_none(t: Target) -> str:
    m = t.client.chat.complete(model=t.model, messages=ASK_TOOL, tools=TOOLS, tool_choice="none",
                               max_tokens=t.text_tokens, temperature=0.0).choices[0].message
    _require(not _calls(m), f"tool_choice='none' but it called {[c.function.name for c in _calls(m)]}")
    return f"text only: {str(m.content)[:40]!r}"


def check_tool_named(t: Target) -> str:
    choice = {"type": "function", "function": {"name": "retrieve_payment_date"}}
    m = t.client.chat.complete(model=t.model, messages=ASK_TOOL, tools=TOOLS, tool_choice=choice,
                               max_tokens=t.max_tokens, temperature=0.0).choices[0].message
    calls = _calls(m)
    _require(bool(calls), "a named tool_choice but no tool call")
    _require(calls[0].function.name == "retrieve_payment_date",
             f"asked for retrieve_payment_date, got {calls[0].function.name!r}")
    return _valid_call(calls[0]), _asked_id(calls[0])


def check_tool_round_trip(t: Target) -> str:
    history = [*ASK_TOOL,
               {"role": "assistant", "content": "", "tool_calls": [{"id": "D681PevKs", "type": "function", "function": {
                   "name": "retrieve_payment_status", "arguments": json.dumps({"transaction_id": "T1001"})}}]},
               {"role": "tool", "name": "retrieve_payment_status", "tool_call_id": "D681PevKs",
                "content": json.dumps({"transaction_id": "T1001", "status": "Paid"})}]
    m = t.client.chat.complete(model=t.model, messages=history, tools=TOOLS, max_tokens=t.text_tokens,
                               temperature=0.0).choices[0].message
    _require(isinstance(m.content, str) and (m.content.strip() != "" or bool(_calls(m))),
             f"no answer after the tool result: {m}")
    return f"answer: {str(m.content)[:40]!r}"


def check_json_object(t: Target) -> str:
    m = t.client.chat.complete(model=t.model, max_tokens=t.max_tokens, temperature=0.0,
                               response_format={"type": "json_object"},
                               messages=[{"role": "user", "content": "Give T1001's status as JSON."}]).choices[0].message
    try:
        value = json.loads(m.content)
    except (TypeError, ValueError):
        raise CheckFailed(f"not JSON: {str(m.content)[:80]!r}") from None
    _require(isinstance(value, dict), f"JSON, but not an object: {m.content[:80]!r}")
    # about the payment asked for: T1001 under an id key (its status is not in the prompt, so it is not judged)
    names_it = any(str(v) == "T1001" and ("id" in str(k).lower() or "transaction" in str(k).lower())
                   for k, v in value.items())
    return m.content[:60], names_it


def check_json_schema(t: Target) -> str:
    fmt = {"type": "json_schema", "json_schema": {"name": "payment", "schema": Payment.model_json_schema(),
                                                  "strict": True}}
    m = t.client.chat.complete(model=t.model, max_tokens=t.max_tokens, temperature=0.0, response_format=fmt,
                               messages=[{"role": "user", "content": "T1001 is paid. Give it as JSON."}]).choices[0].message
    try:
        value = Payment.model_validate_json(m.content or "")
    except ValidationError as exc:
        raise CheckFailed(f"{str(m.content)[:80]!r} fails the schema: {exc.errors()[0]['msg']}") from None
    return m.content[:60], _says_t1001_paid(value)


def check_parse(t: Target) -> str:
    r = t.client.chat.parse(response_format=Payment, model=t.model, max_tokens=t.max_tokens, temperature=0.0,
                            messages=[{"role": "user", "content": "T1001 is paid. Give it as JSON."}])
    parsed = r.choices[0].message.parsed
    _require(isinstance(parsed, Payment), f"message.parsed is {type(parsed).__name__}, not Payment")
    return repr(parsed), _says_t1001_paid(parsed)


def _says_t1001_paid(value: Any) -> bool:
    """Content, not shape: the prompt said 'T1001 is paid'; does the object say so?"""
    fields = value.model_dump() if hasattr(value, "model_dump") else dict(value)
    text = {str(v).lower() for v in fields.values()}
    return "t1001" in text and "paid" in text


def check_embeddings(t: Target) -> str:
    texts = ["a card payment", "a card payment", "the mistral wind"]
    r = t.client.embeddings.create(model=t.embed_model, inputs=texts)
    vectors = [d.embedding for d in r.data]
    _require(len(vectors) == 3, f"3 inputs, {len(vectors)} vectors")
    dims = {len(v) for v in vectors}
    _require(len(dims) == 1 and min(dims) > 0, f"vector lengths {sorted(dims)}")
    _require(all(math.isfinite(x) for v in vectors for x in v), "non-finite values in a vector")
    same = max(abs(a - b) for a, b in zip(vectors[0], vectors[1], strict=True))
    _require(same < 1e-3, f"the same text gave different vectors (max difference {same:.3g})")
    return f"3 vectors of {dims.pop()} dimensions"


def _expect_4xx(call: Callable[[], Any], what: str) -> str:
    try:
        call()
    except MistralError as exc:
        _require(400 <= exc.status_code < 500, f"{what}: status {exc.status_code}, expected 4xx")
        return f"{exc.status_code} {type(exc).__name__}"
    raise CheckFailed(f"{what}: the server answered 200")


def refused(what: str, **request: Any) -> Callable[[Target], str]:
    """A check that a chat request with `request` (over the defaults) gets a 4xx; `what` names it in the failure."""
    def check(t: Target) -> str:
        args = {"model": t.model, "messages": ASK_TEXT, "max_tokens": 2, **request}
        return _expect_4xx(lambda: t.client.chat.complete(**args), what)
    return check


# ---------------------------------------------------------------- the fields SDK 3.x added to chat.complete
ASK_TWO = [{"role": "system", "content": "Call one function per transaction: several calls in one answer are allowed."},
           {"role": "user", "content": "Status of T1001 and T1012, please."}]


def _two_calls(t: Target, parallel: bool) -> list:
    r = t.client.chat.complete(model=t.model, messages=ASK_TWO, tools=TOOLS, tool_choice="required",
                               parallel_tool_calls=parallel, max_tokens=2 * t.max_tokens, temperature=0.0)
    calls = _calls(r.choices[0].message)
    _require(bool(calls), "tool_choice='required' but no tool call")
    return calls


def check_parallel_off(t: Target) -> str:
    calls = _two_calls(t, False)
    _require(len(calls) == 1, f"parallel_tool_calls=False but {len(calls)} calls in one answer: the server dropped "
                              "the field")
    return _valid_call(calls[0])


def check_parallel_on(t: Target) -> str:
    calls = _two_calls(t, True)
    _require(len({c.id for c in calls}) == len(calls), f"calls in one answer share an id: {[c.id for c in calls]}")
    return f"{len(calls)} call(s) in one answer (the model chooses): " + ", ".join(_valid_call(c) for c in calls)


def check_strict(t: Target) -> str:
    strict = [{"type": "function", "function": {**tool["function"], "strict": True}} for tool in TOOLS]
    calls = _calls(t.client.chat.complete(model=t.model, messages=ASK_TOOL, tools=strict, tool_choice="required",
                                          max_tokens=t.max_tokens, temperature=0.0).choices[0].message)
    _require(bool(calls), "strict tools with tool_choice='required' but no tool call")
    return ", ".join(_valid_call(c) for c in calls), all(_asked_id(c) for c in calls)


def check_logprobs(t: Target) -> str:
    r = t.client.chat.complete(model=t.model, messages=ASK_TEXT, max_tokens=3, temperature=0.0, logprobs=True,
                               top_logprobs=3)
    content = list(getattr(r.choices[0].logprobs, "content", None) or [])
    _require(bool(content), "logprobs=True but no choices[0].logprobs")
    _require(len(content) == r.usage.completion_tokens, f"{len(content)} logprobs, {r.usage.completion_tokens} tokens")
    for tok in content:
        values = [a.logprob for a in tok.top_logprobs or []]
        _require(len(values) == 3 and values == sorted(values, reverse=True) and math.isfinite(tok.logprob)
                 and sum(math.exp(v) for v in values) <= 1 + 1e-4, f"not 3 log-probabilities, likeliest first: {values}")
        # greedy (temperature 0): the token taken is the likeliest one
        _require(tok.top_logprobs[0].token_id == tok.token_id, f"took {tok.token!r}, not {tok.top_logprobs[0].token!r}")
    return f"{len(content)} tokens, first {content[0].token!r} at p={math.exp(content[0].logprob):.2f}"


def check_prompt_cache(t: Target) -> str:
    system = {"role": "system", "content": "You answer questions about Harbourline Bank's payments. " * 12}
    seen = []
    for _ in range(2):
        r = t.client.chat.complete(model=t.model, messages=[system, *ASK_TEXT], max_tokens=2, temperature=0.0,
                                   prompt_cache_key="conformance-check")
        n = cached_tokens(r.usage)  # usage.prompt_tokens_details.cached_tokens
        _require(n is None or 0 <= n <= r.usage.prompt_tokens, f"cached_tokens {n!r} outside 0..prompt_tokens")
        seen.append(n)
    return f"prompt_cache_key accepted; cached tokens on the two calls: {seen} (a hit is likely, not promised)"


def check_reasoning_effort(t: Target) -> str:
    try:
        t.client.chat.complete(model=t.model, messages=ASK_TEXT, max_tokens=2, reasoning_effort="none")
    except MistralError as exc:  # a model without the option may refuse it, but must name the field
        _require(400 <= exc.status_code < 500 and "reasoning_effort" in str(exc),
                 f"reasoning_effort='none': status {exc.status_code} without naming the field")
        return f"refused with {exc.status_code}, naming reasoning_effort"
    return "reasoning_effort='none' accepted"


CHECKS: dict[str, Callable[[Target], Any]] = {  # each returns what it saw, or (what it saw, content right)
    "chat": check_chat,
    "max_tokens honoured": check_max_tokens,
    "random_seed reproducible": check_seed,
    "streaming": check_stream,
    "tool_choice auto": check_tool_auto,
    "tool_choice required": check_tool_required,
    "tool_choice none": check_tool_none,
    "tool_choice named": check_tool_named,
    "tool result round trip": check_tool_round_trip,
    "json_object": check_json_object,
    "json_schema": check_json_schema,
    "chat.parse": check_parse,
    "embeddings": check_embeddings,
    "4xx: unknown model": refused("unknown model", model="no-such-model"),
    "4xx: temperature out of range": refused("temperature=5.0", temperature=5.0),
    "4xx: no messages": refused("messages=[]", messages=[]),
    "parallel_tool_calls off": check_parallel_off,
    "parallel_tool_calls on": check_parallel_on,
    "strict function": check_strict,
    "logprobs": check_logprobs,
    "prompt caching": check_prompt_cache,
    "reasoning_effort": check_reasoning_effort,
    "4xx: top_logprobs out of range": refused("top_logprobs=-1", logprobs=True, top_logprobs=-1),
    **RULE_CHECKS,  # La Plateforme's request rules (issue 30): conformance_rules.py
}


def run_checks(url: str | None = None, *, model: str, embed_model: str, client: Any = None,
               api_key: str | None = None, max_tokens: int = 40, only: list[str] | None = None,
               timeout_ms: int = 60_000) -> list[CheckResult]:
    """Run every check (or `only` those named) against `url` or an SDK `client`; one CheckResult each."""
    if client is None:
        from mistralai.client import Mistral

        if not url:
            raise ValueError("give the server's base URL (e.g. http://127.0.0.1:8000) or an SDK client")
        client = Mistral(api_key=api_key or "no-key-needed", server_url=url.rstrip("/"), timeout_ms=timeout_ms)
    unknown = sorted(set(only or []) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown checks {unknown}; have: {list(CHECKS)}")
    target = Target(client=client, model=model, embed_model=embed_model, max_tokens=max_tokens)
    results = []
    for name, check in CHECKS.items():
        if only and name not in only:
            continue
        started = time.perf_counter()
        right = None
        try:
            detail, passed = check(target), True
            if isinstance(detail, tuple):  # (what was seen, was its content right)
                detail, right = detail
                detail = detail if right else f"well-formed only: {detail}"
        except CheckFailed as exc:
            detail, passed = str(exc), False
        except Exception as exc:  # the SDK refused the answer, or the server errored: a failure, with the reason
            detail, passed = f"{type(exc).__name__}: {str(exc).strip()[:160]}", False
        results.append(CheckResult(name, passed, detail, round(time.perf_counter() - started, 3), right))
    return results


def table(results: list[CheckResult]):
    """The results as a DataFrame: one row per check, ✓/✗, what was seen, seconds."""
    import pandas as pd

    return pd.DataFrame([{"check": r.check, "result": "✓ pass" if r.passed else "✗ FAIL", "content": r.verdict,
                          "detail": r.detail, "s": r.seconds} for r in results]).set_index("check")


def main(argv: list[str] | None = None) -> int:
    """`python -m helpers.endpoint.conformance URL`: print the pass/fail table; exit 1 if any check fails."""
    parser = argparse.ArgumentParser(prog="python -m helpers.endpoint.conformance", description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the server's base URL, e.g. http://127.0.0.1:8000 or https://api.mistral.ai")
    parser.add_argument("--model", default="mistral-small-latest", help="chat model name the server knows")
    parser.add_argument("--embed-model", default="mistral-embed", help="embedding model name the server knows")
    parser.add_argument("--api-key-env", default="MISTRAL_API_KEY",
                        help="environment variable holding the bearer key, if the server needs one")
    parser.add_argument("--max-tokens", type=int, default=40, help="reply budget for the structured checks")
    parser.add_argument("--only", nargs="*", help="run only these checks (names as in the table)")
    args = parser.parse_args(argv)
    results = run_checks(args.url, model=args.model, embed_model=args.embed_model, max_tokens=args.max_tokens,
                         api_key=os.environ.get(args.api_key_env), only=args.only)
    width = max(len(r.check) for r in results)
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.check:<{width}}  {r.seconds:6.2f} s  {r.detail}")
    passed = sum(r.passed for r in results)
    judged = [r for r in results if r.right is not None]
    print(f"{passed}/{len(results)} checks passed against {args.url}; content right in "
          f"{sum(bool(r.right) for r in judged)}/{len(judged)} of the calls and JSON replies (the rest well-formed only)")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
