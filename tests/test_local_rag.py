"""helpers.local_rag: each stage is timed on its own (no double counting), percentiles are right, the untimed
index is refused, and an API answer given as a list of chunks becomes its text."""

from __future__ import annotations

import time

import numpy as np
import pytest

from helpers import local_rag, rag


class _BagOfLetters:
    """A deterministic toy embedder: letter counts (26 dims), slowed down so its time is measurable."""

    model_id = "toy-letters"
    dim = 26

    def embed(self, texts):
        time.sleep(0.01)
        out = np.zeros((len(texts), 26), np.float32)
        for i, t in enumerate(texts):
            for ch in t.lower():
                if "a" <= ch <= "z":
                    out[i, ord(ch) - 97] += 1
        return out + 1e-3


def _index():
    text = "apples and apricots. " * 10 + "zebras zigzag with zeal. " * 10
    chunks = rag.chunk_fixed(text, size=60)
    return rag.VectorIndex.build(chunks, local_rag.TimedEmbedder(_BagOfLetters()), metric="cosine")


class _SlowSearch:
    """Wraps the FAISS index so the search itself takes a measurable 5 ms."""

    def __init__(self, inner):
        self.inner = inner

    def search(self, *args, **kwargs):
        time.sleep(0.005)
        return self.inner.search(*args, **kwargs)

    def __getattr__(self, name):  # ntotal, d, ...: the real index's
        return getattr(self.inner, name)


def test_answer_times_each_stage_and_uses_the_grounded_prompt():
    index = _index()
    index.index = _SlowSearch(index.index)
    prompts = []

    def gen(prompt):
        prompts.append(prompt)
        time.sleep(0.02)
        return "an answer [c000]"

    started = time.perf_counter()
    a = local_rag.answer(index, "zebra zigzag", 2, gen)
    wall_ms = (time.perf_counter() - started) * 1000
    assert len(a.hits) == 2 and "zebras" in a.hits[0].chunk.text
    # every stage saw its own sleep: embed 10 ms, search 5 ms, generate 20 ms
    assert a.embed_ms >= 9 and a.search_ms >= 4 and a.generate_ms >= 19
    # the embedding happens inside index.search: counting it in search_ms too would exceed the wall time
    assert a.search_ms < a.embed_ms and a.search_ms < wall_ms
    assert a.embed_ms + a.search_ms + a.generate_ms <= wall_ms
    assert "Question: zebra zigzag" in prompts[0] and a.answer == "an answer [c000]"


def test_summary_of_real_timings_is_ordered():
    index = _index()
    answers = [local_rag.answer(index, q, 1, lambda p: "x") for q in ("apples", "zebra", "apricot", "zeal")]
    s = local_rag.latency_summary(answers)
    for stage in ("embed_ms", "search_ms", "generate_ms", "total_ms"):
        assert 0 <= s[f"{stage}_p50"] <= s[f"{stage}_p95"]
    assert s["embed_ms_p50"] >= 9  # the toy embedder sleeps 10 ms per call


def test_untimed_index_is_refused():
    text = "apples and apricots. " * 10
    plain = rag.VectorIndex.build(rag.chunk_fixed(text, size=60), _BagOfLetters(), metric="cosine")
    with pytest.raises(TypeError, match="TimedEmbedder"):
        local_rag.answer(plain, "apples", 1, lambda p: "")


def test_latency_summary_percentiles():
    answers = [local_rag.TimedAnswer("q", [], "", embed_ms=float(i), search_ms=1.0, generate_ms=10.0 * i)
               for i in range(1, 21)]
    s = local_rag.latency_summary(answers)
    assert s["embed_ms_p50"] == pytest.approx(10.5) and s["generate_ms_p50"] == pytest.approx(105.0)
    assert s["embed_ms_p95"] == pytest.approx(np.percentile(range(1, 21), 95))
    assert s["search_ms_p50"] == s["search_ms_p95"] == 1.0
    with pytest.raises(ValueError):
        local_rag.latency_summary([])


def test_api_generate_returns_text_for_chunked_content():
    from types import SimpleNamespace

    from mistralai.client.models import AssistantMessage, TextChunk, ThinkChunk

    calls = []

    def complete(**kw):
        calls.append(kw)
        msg = AssistantMessage(content=[ThinkChunk(thinking=[TextChunk(text="hidden reasoning")]),
                                        TextChunk(text="an "), TextChunk(text="answer")])
        return SimpleNamespace(choices=[SimpleNamespace(message=msg)])

    client = SimpleNamespace(chat=SimpleNamespace(complete=complete))
    # the answer's text chunks joined, the reasoning left out (was: the list itself returned as the "text")
    assert local_rag.api_generate(client, "mistral-small-latest", 16)("Q?") == "an answer"
    assert calls[0]["max_tokens"] == 16 and calls[0]["temperature"] == 0


def test_answer_on_a_hybrid_index_with_the_json_prompt():
    from helpers import citations, hybrid

    text = "apples and apricots. " * 10 + "zebras zigzag with zeal. " * 10
    index = hybrid.HybridIndex.build(rag.chunk_fixed(text, size=60), local_rag.TimedEmbedder(_BagOfLetters()))
    prompts = []
    a = local_rag.answer(index, "zebras zigzag", 2, lambda p: prompts.append(p) or '{"answer": "z", "sources": []}',
                         prompt_for=citations.cited_prompt)
    assert len(a.hits) == 2 and "zebras" in a.hits[0].chunk.text
    assert '"sources"' in prompts[0] and f"[{a.hits[0].chunk.id}]" in prompts[0]
    assert a.embed_ms >= 9 and a.search_ms >= 0  # BM25 and the fusion count as search, the embedding does not
