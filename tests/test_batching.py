"""Continuous batching in the endpoint: concurrent requests share decoding steps and answer as they would alone.

What is checked, and why not more: batched and unbatched greedy answers are identical on these prompts (plain text,
forced tool calls, JSON schema and JSON object, tools="auto", with and without prefix caching), and the logits of a
batched row stay within 1e-3 of the same request's logits alone, below every greedy margin on these prompts. They
are not bit-for-bit equal: a batched matrix product and attention over a left-padded cache round differently (see
helpers/endpoint/batching.py), so a greedy near-tie could flip on some other prompt.

Most tests drive the scheduler directly (the worker thread's loop, one `tick` at a time) on SmolLM2-135M, the
course's offline model; one goes through HTTP and the SDK.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import pytest

from helpers import selfhost
from helpers.endpoint import ChatEngine, LocalServer, SamplingParams, batching
from helpers.endpoint.batching import Scheduler
from helpers.settings import SMOLLM

GREEDY = SamplingParams(max_tokens=16, temperature=0)
ASKS = ["What is the capital of France?", "Write a haiku about the sea.", "Is 17 a prime number?",
        "Tell me a short story about a dragon who loves apples and lives in a tall tower far away.",
        "Name three colours.", "What is 2+2?"]
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "units": {"type": "string", "enum": ["C", "F"]}},
    "required": ["city", "units"]}}}
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
          "required": ["answer", "confidence"]}


@pytest.fixture(scope="module")
def lm():
    return selfhost.load_model(SMOLLM, "fp32", "cpu")


class Req:
    """A request as the worker's job presents it to the scheduler, recording what comes back."""

    def __init__(self, prompt, params=GREEDY, stream=False):
        self.prompt, self.params, self.stream, self.cancelled = prompt, params, stream, False
        self.pieces: list[str] = []
        self.gen = self.error = None
        self.done_at = None

    def on_text(self, text):
        self.pieces.append(text)

    def wants_stream(self):
        return self.stream

    def finish(self, gen):
        self.gen, self.done_at = gen, time.perf_counter()

    def fail(self, exc):
        self.error = exc


def user(text):
    return [{"role": "user", "content": text}]


_ALONE: dict[str, object] = {}


def alone(lm, messages, params=GREEDY, **render):
    """The answer of a fresh engine (no prefix cache) running this request by itself (computed once per request)."""
    key = json.dumps([messages, repr(params), render], sort_keys=True)
    if key not in _ALONE:
        engine = ChatEngine(lm)
        _ALONE[key] = engine.generate(engine.render(messages, **render), params)
    return _ALONE[key]


def run(sched, reqs, join_after=None, late=()):
    """Tick the scheduler until all is done; `late` requests are added after `join_after` ticks."""
    for r in reqs:
        sched.add(r)
    ticks = 0
    while sched.busy or (late and ticks <= (join_after or 0)):
        sched.tick()
        ticks += 1
        if ticks == join_after:
            for r in late:
                sched.add(r)
    for r in [*reqs, *late]:
        assert r.error is None, r.error
        assert r.gen is not None
    return ticks


def test_greedy_answers_in_a_batch_are_the_answers_alone_even_when_requests_join_late(lm):
    engine = ChatEngine(lm)
    sched = Scheduler(engine, max_batch=16)
    first = [Req(engine.render(user(t)), stream=i % 2 == 0) for i, t in enumerate(ASKS[:3])]
    late = [Req(engine.render(user(t)), stream=i % 2 == 1) for i, t in enumerate(ASKS[3:])]
    run(sched, first, join_after=3, late=late)  # three decode together, three more join at the fourth step
    assert sched.peak == len(ASKS)
    for text, r in zip(ASKS, [*first, *late], strict=True):
        assert r.gen.ids == alone(lm, user(text)).ids, text
        if r.stream:
            assert "".join(r.pieces) == r.gen.content  # each request streams its own text
    assert "Paris" in first[0].gen.content


def test_tool_calls_and_json_batch_with_free_text_and_answer_as_alone(lm):
    engine = ChatEngine(lm)
    kinds = [
        (user("What is the weather in Paris?"), {"tools": [WEATHER], "tool_choice": "any"}),
        (user("Is Paris in France? Say how sure you are."),
         {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}}}),
        (user("Give the capital of Italy as JSON."), {"response_format": {"type": "json_object"}}),
        (user("What is the weather in Rome?"), {"tools": [WEATHER], "tool_choice": "auto"}),
        (user(ASKS[0]), {}),
    ]
    params = SamplingParams(max_tokens=40, temperature=0)
    reqs = [Req(engine.render(m, **kw), params) for m, kw in kinds]
    sched = Scheduler(engine, max_batch=8)
    run(sched, reqs)
    assert sched.peak == len(kinds)
    for (messages, kw), r in zip(kinds, reqs, strict=True):
        solo = alone(lm, messages, params, **kw)
        assert r.gen.ids == solo.ids and r.gen.content == solo.content, kw
        assert r.gen.finish_reason == solo.finish_reason
        assert [c["function"] for c in r.gen.tool_calls or []] == [c["function"] for c in solo.tool_calls or []]
    forced, structured = reqs[0].gen, reqs[1].gen
    assert forced.finish_reason == "tool_calls"  # each row kept its own grammar inside the shared step
    jsonschema.validate(json.loads(forced.tool_calls[0]["function"]["arguments"]), WEATHER["function"]["parameters"])
    jsonschema.validate(json.loads(structured.content), SCHEMA)


def test_prefix_caching_inside_a_batch_changes_no_answer(lm):
    system = {"role": "system", "content": "You sort customer messages for a bank into one of: cards, payments, "
                                           "disputes, fraud, fees. Answer with the one word only. " * 3}
    asks = ["My card was declined at the shop.", "Why was I charged a fee for my transfer?",
            "Someone took money from my account.", "I want to dispute a payment."]
    params = SamplingParams(max_tokens=8, temperature=0)
    engine = ChatEngine(lm)
    reqs = [Req(engine.render([system, {"role": "user", "content": a}]), params) for a in asks]
    run(Scheduler(engine, max_batch=8), reqs)
    assert reqs[0].gen.cached_tokens == 0 and all(r.gen.cached_tokens > 40 for r in reqs[1:])  # shared start reused
    warm = ChatEngine(lm)  # unbatched with prefix caching: one engine, one request after another
    for a, r in zip(asks, reqs, strict=True):
        messages = [system, {"role": "user", "content": a}]
        assert r.gen.ids == alone(lm, messages, params).ids == warm.generate(warm.render(messages), params).ids


def recording(engine, log):
    """Wrap engine.session so each request's logits are logged (before its grammar or bans touch them)."""
    inner = engine.session

    def session(*args, **kwargs):
        steps, trace = inner(*args, **kwargs), []
        log.append(trace)
        feed = next(steps)
        while True:
            logits = yield feed
            trace.append(logits.clone())
            try:
                feed = steps.send(logits)
            except StopIteration as done:
                return done.value

    engine.session = session


def test_batched_logits_agree_with_alone_closer_than_any_greedy_margin(lm):
    solo_log, batch_log = [], []
    for text in ASKS[:4]:
        engine = ChatEngine(lm)
        recording(engine, solo_log)
        engine.generate(engine.render(user(text)), GREEDY)
    engine = ChatEngine(lm)
    recording(engine, batch_log)
    run(Scheduler(engine), [Req(engine.render(user(t))) for t in ASKS[:4]])
    worst, margin = 0.0, float("inf")
    for solo, batched in zip(solo_log, batch_log, strict=True):
        assert len(solo) == len(batched)
        for a, b in zip(solo, batched, strict=True):
            worst = max(worst, float((a - b).abs().max()))
            top2 = a.topk(2).values[0]
            margin = min(margin, float(top2[0] - top2[1]))
    assert worst < 1e-3, worst  # not bit-for-bit (batched kernels round differently), but close
    assert margin > 2 * worst, (margin, worst)  # so no greedy choice on these prompts could flip


def test_each_request_keeps_its_seed_stops_and_cancellation(lm):
    engine = ChatEngine(lm)
    sampled = SamplingParams(max_tokens=12, temperature=0.9, seed=7)
    stopped = SamplingParams(max_tokens=16, temperature=0, stop=["Paris"])
    reqs = [Req(engine.render(user(ASKS[1])), sampled), Req(engine.render(user(ASKS[0])), stopped),
            Req(engine.render(user(ASKS[3])), GREEDY), Req(engine.render(user(ASKS[2])), GREEDY)]
    sched = Scheduler(engine)
    for r in reqs:
        sched.add(r)
    for _ in range(4):
        sched.tick()
    reqs[3].cancelled = True  # the client of the last one leaves mid-answer
    while sched.busy:
        sched.tick()
    assert reqs[0].gen.ids == alone(lm, user(ASKS[1]), sampled).ids  # same seed, same sample, batched or not
    assert reqs[1].gen.finish_reason == "stop" and "Paris" not in reqs[1].gen.content
    assert reqs[1].gen.content == alone(lm, user(ASKS[0]), stopped).content
    assert reqs[2].gen.ids == alone(lm, user(ASKS[3])).ids  # its neighbours leaving changed nothing
    assert reqs[3].gen.finish_reason == "cancelled" and len(reqs[3].gen.ids) < GREEDY.max_tokens


def test_finished_requests_leave_and_waiting_ones_take_their_place(lm):
    engine = ChatEngine(lm)
    sizes = [16, 3, 3, 3, 3]
    reqs = [Req(engine.render(user(ASKS[i])), SamplingParams(max_tokens=n, min_tokens=n, temperature=0))
            for i, n in enumerate(sizes)]
    sched = Scheduler(engine, max_batch=2)
    ticks = run(sched, reqs)
    assert sched.peak == 2
    assert all(len(r.gen.ids) == n for r, n in zip(reqs, sizes, strict=True))
    assert max(r.done_at for r in reqs[1:]) < reqs[0].done_at  # four short ones came and went beside the long one
    assert ticks < sum(sizes)  # fewer steps than one request after another


def test_a_request_too_long_to_batch_runs_alone_beside_the_batch(lm, monkeypatch):
    engine = ChatEngine(lm)
    long_prompt = engine.render(user(ASKS[3]))
    monkeypatch.setattr(batching, "SOLO_TOKENS", len(long_prompt.ids) + GREEDY.max_tokens - 1)
    reqs = [Req(long_prompt), Req(engine.render(user(ASKS[0]))), Req(engine.render(user(ASKS[2])))]
    sched = Scheduler(engine)
    run(sched, reqs)
    assert sched.solo_runs == 1 and sched.peak == 2  # the long one alone, the two short ones together
    for text, r in zip([ASKS[3], ASKS[0], ASKS[2]], reqs, strict=True):
        assert r.gen.ids == alone(lm, user(text)).ids


def test_max_batch_one_is_one_request_at_a_time(lm):
    engine = ChatEngine(lm)
    reqs = [Req(engine.render(user(t)), SamplingParams(max_tokens=3, min_tokens=3, temperature=0)) for t in ASKS[:3]]
    sched = Scheduler(engine, max_batch=1)
    assert run(sched, reqs) == 3 * 2  # prefill gives the first token, two steps the rest: one request after another
    assert sched.peak == 1 and sched.solo_runs == 0


def test_concurrent_sdk_requests_are_batched_and_answer_as_one_at_a_time(lm):
    import httpx
    from mistralai.client import Mistral

    def ask(client, text):
        r = client.chat.complete(model="mistral-small-latest", messages=user(text), max_tokens=12, temperature=0)
        return r.choices[0].message.content

    def stream(client, text):
        return "".join(e.data.choices[0].delta.content or "" for e in client.chat.stream(
            model="mistral-small-latest", messages=user(text), max_tokens=12, temperature=0))

    answers = {}
    for max_batch in (8, 1):
        with LocalServer(engine=ChatEngine(lm), max_batch=max_batch) as url:
            client = Mistral(api_key="any", server_url=url)
            with ThreadPoolExecutor(5) as pool:
                streamed = pool.submit(stream, client, ASKS[1])
                answers[max_batch] = [*pool.map(ask, [client] * 4, ASKS[:4]), streamed.result()]
            health = httpx.get(url + "/health").json()
        assert health["max_batch"] == max_batch
        assert (health["peak_batch"] > 1) == (max_batch > 1)  # five requests in flight: batched, or one at a time
    assert answers[8] == answers[1]
    assert answers[8][4] == answers[8][1]  # streamed, batched beside the others, it says what complete says


def test_serving_batching_switches_the_course_endpoint_off_and_back():
    import httpx

    from helpers import serving
    from helpers.endpoint import ensure_server, running_worker
    from helpers.settings import DEFAULT_LOCAL_EMBED_MODEL

    url = ensure_server(model="standin", embed_model=DEFAULT_LOCAL_EMBED_MODEL, device="cpu")
    worker = running_worker(url)
    with serving.batching(url, 1) as run:
        assert worker.max_batch == 1
        with ThreadPoolExecutor(3) as pool:  # three at once, decoded one at a time
            list(pool.map(lambda _: httpx.post(url + "/v1/chat/completions", timeout=60, json={
                "model": "mistral-small-latest", "messages": user("Hi"), "max_tokens": 3}).raise_for_status(), range(3)))
    assert run.before == batching.MAX_BATCH and worker.max_batch == run.before and run.peak == 1
    with pytest.raises(ValueError, match="not the course endpoint"), serving.batching("http://127.0.0.1:9", 1):
        pass


def test_the_mistral_tokenizer_path_batches_too_with_its_tool_calls_token():
    from helpers.endpoint import ensure_server, running_engine
    from helpers.settings import DEFAULT_LOCAL_EMBED_MODEL

    loaded = running_engine(ensure_server(model="standin", embed_model=DEFAULT_LOCAL_EMBED_MODEL, device="cpu")).loaded
    engine = ChatEngine(loaded)  # the random-weight stand-in, rendered by mistral-common
    assert engine.tool_calls_id is not None
    kinds = [{"tools": [WEATHER], "tool_choice": "any"}, {"tools": [WEATHER], "tool_choice": "auto"}, {}]
    params = SamplingParams(max_tokens=64, temperature=0)
    reqs = [Req(engine.render(user("Weather in Paris?"), **kw), params) for kw in kinds]
    run(Scheduler(engine), reqs)
    for kw, r in zip(kinds, reqs, strict=True):
        solo = ChatEngine(loaded)
        assert r.gen.ids == solo.generate(solo.render(user("Weather in Paris?"), **kw), params).ids, kw
    forced = reqs[0].gen
    assert forced.ids[0] == engine.tool_calls_id and forced.finish_reason == "tool_calls"
