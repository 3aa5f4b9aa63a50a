"""helpers.endpoint.conformance: passes the course endpoint, and FAILS a server that breaks the Mistral API contract."""

from __future__ import annotations

import random
import socket
import threading
import time

import pytest
import uvicorn
from fastapi import FastAPI, Request

from helpers import endpoint as srv
from helpers.endpoint import conformance, conformance_rules
from helpers.settings import DEFAULT_LOCAL_EMBED_MODEL

# Checks whose outcome does not depend on how good the model is: the stand-in (random weights) must pass them.
STRUCTURAL = ["max_tokens honoured", "random_seed reproducible", "tool_choice required", "tool_choice none",
              "tool_choice named", "json_object", "json_schema", "chat.parse", "embeddings",
              "4xx: unknown model", "4xx: temperature out of range", "4xx: no messages",
              "parallel_tool_calls off", "parallel_tool_calls on", "strict function", "logprobs", "prompt caching",
              "reasoning_effort", "4xx: top_logprobs out of range", *conformance.RULE_CHECKS]


def broken_app() -> FastAPI:
    """A server that answers in the API's shapes but breaks its contract: it ignores tool_choice,
    response_format, max_tokens and random_seed, accepts any model and any input, and embeds at random."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        words = " ".join(random.choice(["sure", "maybe", "paid", "no"]) for _ in range(6))
        return {"id": "x", "object": "chat.completion", "created": 0, "model": body.get("model", "?"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": f"Here you go: {words}"}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}}

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        body = await request.json()
        texts = body.get("inputs") or []
        return {"id": "e", "object": "list", "model": body.get("model", "?"),
                "data": [{"object": "embedding", "index": i, "embedding": [random.random() for _ in range(8)]}
                         for i, _ in enumerate(texts)],
                "usage": {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3}}

    return app


def parallel_dropping_app() -> FastAPI:
    """A server that honours everything about tool calls except `parallel_tool_calls`: with tools it always
    answers two calls, whatever the request says (as a server that drops the field and lets the model run on)."""
    app = FastAPI()
    seen: list = []
    app.state.seen = seen

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        seen.append(body.get("parallel_tool_calls"))
        calls = [{"id": f"call{i}AbCd", "type": "function", "index": i,
                  "function": {"name": name, "arguments": '{"transaction_id": "T1001"}'}}
                 for i, name in enumerate(["retrieve_payment_status", "retrieve_payment_date"])]
        message = ({"role": "assistant", "content": "", "tool_calls": calls} if body.get("tools")
                   else {"role": "assistant", "content": "Blue."})
        return {"id": "x", "object": "chat.completion", "created": 0, "model": body.get("model", "?"),
                "choices": [{"index": 0, "finish_reason": "tool_calls" if body.get("tools") else "stop",
                             "message": message}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}}

    return app


def _serve(app):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the fake server did not start"
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(scope="module")
def parallel_dropping():
    app = parallel_dropping_app()
    server, thread, url = _serve(app)
    yield url, app.state.seen
    server.should_exit = True
    thread.join(timeout=5)


def test_a_server_that_drops_parallel_tool_calls_fails_the_check(parallel_dropping):
    url, seen = parallel_dropping
    results = by_name(conformance.run_checks(url, model="m", embed_model="e",
                                             only=["parallel_tool_calls off", "parallel_tool_calls on"]))
    assert False in seen and True in seen  # the SDK did send the field both ways
    assert not results["parallel_tool_calls off"].passed
    assert "dropped the field" in results["parallel_tool_calls off"].detail
    assert results["parallel_tool_calls on"].passed, results["parallel_tool_calls on"].detail  # two calls are fine


def test_the_new_field_checks_fail_a_server_that_ignores_them(broken_url):
    results = by_name(conformance.run_checks(broken_url, model="m", embed_model="e", only=[
        "parallel_tool_calls off", "strict function", "logprobs", "4xx: top_logprobs out of range"]))
    failed = {n for n, r in results.items() if not r.passed}
    assert failed == set(results), {n: r.detail for n, r in results.items() if r.passed}
    assert "no choices[0].logprobs" in results["logprobs"].detail


@pytest.fixture(scope="module")
def broken_url():
    server, thread, url = _serve(broken_app())
    yield url
    server.should_exit = True
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def course_url():
    return srv.ensure_server(model="standin", embed_model=DEFAULT_LOCAL_EMBED_MODEL, device="cpu")


def by_name(results):
    return {r.check: r for r in results}


def test_a_broken_server_fails_the_contract_checks(broken_url):
    results = by_name(conformance.run_checks(broken_url, model="m", embed_model="e"))
    assert len(results) == len(conformance.CHECKS) >= 15
    must_fail = ["max_tokens honoured", "random_seed reproducible", "tool_choice required", "tool_choice named",
                 "json_object", "json_schema", "chat.parse", "embeddings", "4xx: unknown model",
                 "4xx: temperature out of range", "4xx: no messages"]
    wrongly_passed = [name for name in must_fail if results[name].passed]
    assert not wrongly_passed, {n: results[n].detail for n in wrongly_passed}
    # plain chat and streaming-free checks it does honour are not failed for nothing
    assert results["chat"].passed and results["tool_choice none"].passed, results["chat"].detail
    assert "no tool call" in results["tool_choice required"].detail
    assert "answered 200" in results["4xx: unknown model"].detail


def test_a_server_that_accepts_everything_fails_the_request_rule_checks(broken_url):
    """Issue 30: each rule of La Plateforme's the lenient server breaks is reported, with what it did instead."""
    refusals = [n for n in conformance_rules.RULE_CHECKS if n.startswith("4xx")]
    results = by_name(conformance.run_checks(broken_url, model="m", embed_model="e",
                                             only=[*refusals, "API: safe_prompt", "embeddings: base64",
                                                   "streamed tool calls = non-streamed"]))
    wrongly_passed = {n: r.detail for n, r in results.items() if r.passed}
    assert not wrongly_passed, wrongly_passed
    assert "answered 200; La Plateforme answers 400" in results["4xx: user right after tool"].detail
    assert "422 extra_forbidden" in results["4xx: max_completion_tokens (422)"].detail
    assert "added 0 prompt tokens" in results["API: safe_prompt"].detail


def test_the_course_endpoint_passes_every_structural_check(course_url):
    results = conformance.run_checks(course_url, model="mistral-small-latest", embed_model="mistral-embed",
                                     only=STRUCTURAL)
    failed = {r.check: r.detail for r in results if not r.passed}
    assert not failed, failed
    assert [r.check for r in results] == [c for c in conformance.CHECKS if c in STRUCTURAL]


def test_command_line_prints_the_table_and_exits_1_on_failure(broken_url, capsys):
    code = conformance.main([broken_url, "--model", "m", "--embed-model", "e", "--only", "json_object", "chat"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  json_object" in out and "PASS  chat" in out and "1/2 checks passed" in out


def test_command_line_exits_0_when_all_pass(course_url, capsys):
    code = conformance.main([course_url, "--only", "4xx: unknown model", "embeddings"])
    assert code == 0, capsys.readouterr().out


def test_unknown_check_names_and_missing_url_are_refused():
    with pytest.raises(ValueError, match="unknown checks"):
        conformance.run_checks("http://127.0.0.1:9", model="m", embed_model="e", only=["no such check"])
    with pytest.raises(ValueError, match="base URL"):
        conformance.run_checks(None, model="m", embed_model="e")


def test_table_marks_pass_and_fail():
    rows = conformance.table([conformance.CheckResult("a", True, "ok", 0.1),
                              conformance.CheckResult("b", False, "bad", 0.2)])
    assert list(rows["result"]) == ["✓ pass", "✗ FAIL"] and list(rows.index) == ["a", "b"]


def junk_app() -> FastAPI:
    """A server that honours every shape — tool calls when forced, JSON when asked, the schema's fields — but fills
    them with junk: the contract checks pass; the content verdicts must not."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        message = {"role": "assistant", "content": '{"transaction_id": ",", "status": "Failed"}'}
        finish = "stop"
        choice = body.get("tool_choice")
        if body.get("tools") and choice not in (None, "auto", "none"):
            name = choice["function"]["name"] if isinstance(choice, dict) else "retrieve_payment_status"
            message = {"role": "assistant", "content": "", "tool_calls": [
                {"id": "abcdefghi", "type": "function",
                 "function": {"name": name, "arguments": '{"transaction_id": ","}'}}]}
            finish = "tool_calls"
        return {"id": "x", "object": "chat.completion", "created": 0, "model": body.get("model", "?"),
                "choices": [{"index": 0, "finish_reason": finish, "message": message}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}}

    return app


def test_well_formed_junk_passes_the_contract_but_not_the_content():
    server, thread, url = _serve(junk_app())
    try:
        shaped = ["tool_choice required", "tool_choice named", "json_object", "json_schema", "chat.parse"]
        results = by_name(conformance.run_checks(url, model="m", embed_model="e", only=shaped))
        assert all(results[n].passed for n in shaped), {n: results[n].detail for n in shaped}  # well-formed
        assert all(results[n].right is False and results[n].verdict == "well-formed only" for n in shaped)
        assert results["tool_choice required"].detail.startswith("well-formed only")
    finally:
        server.should_exit = True
        thread.join(timeout=5)


def test_the_course_endpoint_reports_content_beside_the_contract(course_url):
    results = by_name(conformance.run_checks(course_url, model="mistral-small-latest", embed_model="mistral-embed",
                                             only=["tool_choice required", "json_schema", "chat"]))
    assert results["chat"].right is None and results["chat"].verdict == ""  # free text: not judged
    assert results["tool_choice required"].right in (True, False) and results["json_schema"].right in (True, False)
