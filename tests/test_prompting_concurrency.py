"""`patterns.run_pattern(concurrency=N)`: N requests in flight from a thread pool, answers in the rows' order."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace as NS

import pytest

from helpers.course.evals import patterns


def test_concurrent_run_keeps_the_rows_order_and_has_several_requests_in_flight():
    data = patterns.load_messages()
    rows = data[data.split == "test"].head(8)
    lock, state = threading.Lock(), {"now": 0, "most": 0}

    def complete(model, messages, **options):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.05)  # long enough for the pool's other threads to send theirs
        with lock:
            state["now"] -= 1
        return NS(choices=[NS(message=NS(role="assistant", content=messages[-1]["content"][:40]),
                              finish_reason="stop")], usage=NS(prompt_tokens=10, completion_tokens=1))

    client = NS(chat=NS(complete=complete))
    answers = patterns.run_pattern(client, "mistral-small-latest", lambda t: [{"role": "user", "content": t}], rows,
                                    read=str, check=lambda p, row: p == row["text"][:40], concurrency=4)
    assert [a.id for a in answers] == list(rows["id"]) and all(a.correct for a in answers)
    assert state["most"] == 4
    assert patterns.summary(answers)["latency_at_concurrency"] == 4
    alone = patterns.run_pattern(client, "mistral-small-latest", lambda t: [{"role": "user", "content": t}], rows,
                                  read=str, check=lambda p, row: True)
    assert patterns.summary(alone)["latency_at_concurrency"] == 1
    with pytest.raises(ValueError, match="concurrency must be 1 or more"):
        patterns.run_pattern(client, "m", lambda t: [], rows, read=str, check=lambda p, r: True, concurrency=0)
