"""helpers.serving: the load test against a fake client, cost arithmetic, and matrix cells that must be labelled."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from helpers import serving
from helpers.course import charts


class OneAtATime:
    """A fake SDK client whose server handles one request at a time, each taking `service_s`."""

    def __init__(self, service_s: float = 0.02) -> None:
        self.service_s, self.lock, self.max_in_flight, self.in_flight = service_s, threading.Lock(), 0, 0
        self.chat = SimpleNamespace(complete=self.complete)

    def complete(self, **kw):
        with self.lock:
            time.sleep(self.service_s)
        return SimpleNamespace(usage=SimpleNamespace(prompt_tokens=12, completion_tokens=kw["max_tokens"]))


def test_a_serial_server_has_flat_throughput_and_growing_latency():
    client = OneAtATime()
    one = serving.load_test(client, "m", concurrency=1, requests=8, max_tokens=4)
    eight = serving.load_test(client, "m", concurrency=8, requests=8, max_tokens=4)
    assert one.requests == eight.requests == 8 and one.mean_completion_tokens == 4 and one.mean_prompt_tokens == 12
    assert eight.requests_per_s < 1.5 * one.requests_per_s
    assert eight.p95_s > 3 * one.p95_s  # the last of 8 waited for the 7 before it
    assert one.tokens_per_s == pytest.approx(4 * one.requests_per_s, rel=0.01)


def test_load_test_refuses_fewer_requests_than_concurrency():
    with pytest.raises(ValueError, match="concurrency"):
        serving.load_test(OneAtATime(), "m", concurrency=4, requests=2)


def test_costs():
    assert serving.selfhost_cost_per_1000(3.6, 1.0) == pytest.approx(1.0)  # $3.6/h = $0.001/s; 1,000 s
    with pytest.raises(ValueError):
        serving.selfhost_cost_per_1000(1.0, 0)
    # mistral-small-latest: $0.15 in / $0.60 out per 1M tokens (data/models.csv, 2026-08-21)
    assert serving.api_cost_per_1000("mistral-small-latest", 1000, 100) == pytest.approx(1000 * (150 + 60) / 1e6)


def test_cells_must_be_labelled_and_sourced():
    ok = serving.cell("1 s", "measured", "CPU, 2026-11-25")
    assert ok == {"value": "1 s", "label": "measured", "where": "CPU, 2026-11-25"}
    with pytest.raises(ValueError, match="label"):
        serving.cell("1 s", "guessed", "somewhere")
    with pytest.raises(ValueError, match="where"):
        serving.cell("1 s", "measured", "")
    matrix = {"api": {"cost": ok, "bad": {"value": 1, "label": "vibes", "where": "x"}}, "local": {"cost": ok}}
    assert serving.unlabelled(matrix) == ["api / bad"]
    frame = serving.matrix_frame({"api": {"cost": ok}, "local": {"memory": ok}})
    assert frame.loc["cost", "api"] == "1 s [measured]" and frame.loc["cost", "local"] == "—"
    read = serving.cell("built in", "literature", "the source post, collected 2026-11-25")
    assert serving.matrix_frame({"api": {"tools": read}}).loc["tools", "api"] == \
        "built in [literature: the source post, collected 2026-11-25]"  # a figure from elsewhere names where and when


def test_plot_load_is_legible():
    from helpers.course.legible import assert_legible

    rs = [serving.LoadResult(c, 16, 1.0, 1.0, 8.0, 0.5 * c, 0.6 * c, 12, 8) for c in (1, 4, 16)]
    assert_legible(charts.plot_load({"server": rs}, title="test load\nmodel · CPU · 2026-11-25"))


def test_matrix_takes_09s_record_from_the_same_run_and_says_what_the_load_shows(tmp_path, monkeypatch):
    import json

    from helpers.course.matrix import load_conclusion, matrix_conclusion, tools_cell

    monkeypatch.delenv("COURSE_METRICS_FILE", raising=False)
    assert tools_cell("SmolLM2-135M-Instruct")["label"] == "not measured"  # run alone: 10 points at 09
    (tmp_path / "09_selfhost_tools_json.json").write_text(json.dumps({
        "measured_on": "CPU only, SmolLM2-135M-Instruct on the course endpoint (CPU), 2026-12-06",
        "schema_valid": {"constrained": 1.0, "free": 0.25}, "records_right": {"constrained": "0 of 4", "free": "0 of 4"}}))
    monkeypatch.setenv("COURSE_METRICS_FILE", str(tmp_path / "10_serving_decision_matrix.json"))
    got = tools_cell("SmolLM2-135M-Instruct")
    assert got["label"] == "measured" and "100% of JSON replies schema-valid (0 of 4 with the right values), 25% without" in got["value"]
    assert tools_cell("Ministral-3-3B-Instruct-2512")["label"] == "not measured"  # 09 measured another model
    on = [serving.LoadResult(c, c, 1.0, r, 8.0, p, p, 12, 8) for c, r, p in ((1, 2.0, 0.5), (16, 8.0, 1.8))]
    off = [serving.LoadResult(c, c, 1.0, r, 8.0, p, p, 12, 8) for c, r, p in ((1, 2.1, 0.5), (16, 2.0, 3.7))]
    said = load_conclusion(on, off, {"on": [1, 16], "off": [1, 1]})
    assert "8.00 requests/s with batching on, 2.00 off (4.0×)" in said and "(0.95) is noise" in said, said
    assert "the median request at 16 concurrent took 3.6× as long as one alone (0.50 s), not 16×" in said, said
    matrix = {"api": {"cost": serving.cell("$1", "estimated", "x")}, "course endpoint": {"cost": got}}
    said = matrix_conclusion(matrix, {"API": 0.01, "course endpoint": 0.02}, "SmolLM2", "mistral-small-latest")
    assert said.startswith("2 cells: 1 estimated, 1 measured.") and "the API comes out cheaper" in said, said
    assert "p95 rests on 1, 16 requests at 1, 16 concurrent" in load_conclusion(on, off, {"on": [1, 16], "off": [1, 1]})


def test_choose_gives_the_break_even_traffic_from_the_dated_price():
    from helpers.catalog import tier
    from helpers.course.matrix import choose

    on = [serving.LoadResult(c, c, 1.0, r, 8.0, 0.5, 0.5, 38, 8) for c, r in ((1, 0.6), (16, 2.3))]
    per_1000 = serving.api_cost_per_1000("ministral-3b-latest", 38, 8)
    said = choose("ministral-3b-latest", on[0], on, 0.5)
    assert f"below about {0.5 / 3.6 / per_1000:,.1f} requests/s" in said, said  # $/h ÷ $ per request = requests/h
    assert f"${per_1000:.4f} per 1,000" in said and tier("ministral-3b-latest").prices_as_of in said
    assert "0.60 requests/s for 1 client, 2.30 for 16" in said
    assert "at any traffic" in choose("ministral-3b-latest", on[0], on, 0.0)  # a GPU already paid for
