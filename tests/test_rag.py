"""helpers.rag: chunking, batching within mistral-embed's limits, the embedding cache, the index, metrics, errors."""

from __future__ import annotations

import hashlib
import math
import os
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mistralai.client.models import EmbeddingResponse, EmbeddingResponseData, UsageInfo

from helpers import embeddings, rag
from helpers.course.evals import retrieval
from helpers.course.evals.retrieval import EvalItem, retrieval_metrics
from helpers.rag import (
    Chunk,
    Hit,
    IndexFileError,
    IndexMismatchError,
    RagError,
    VectorIndex,
    chunk_fixed,
    chunk_sentences,
    plan_batches,
)

TEXT = (
    "Instant transfers are free. They arrive within ten seconds! Standard transfers take a day.\n\n"
    "Cards cost nothing. A replacement card costs 5 euros? Express cards cost 20 euros. "
) * 6


class HashEmbedder:
    """Deterministic bag-of-words vectors: texts sharing words are close. No model, no network."""

    def __init__(self, model_id: str = "hash-32", dim: int = 32) -> None:
        self.model_id, self._dim, self.calls = model_id, dim, 0

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self._dim), np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                h = int(hashlib.md5(word.strip(".,?!").encode()).hexdigest(), 16)
                out[row, h % self._dim] += 1.0
        return out


class FakeEmbeddings:
    """Stands in for client.embeddings: checks the limits on every request and answers with SDK types."""

    def __init__(self, max_inputs: int, max_tokens: int, counter) -> None:
        self.max_inputs, self.max_tokens, self.counter = max_inputs, max_tokens, counter
        self.requests: list[list[str]] = []
        self.retries_seen: list[object] = []

    def create(self, *, model: str, inputs: list[str], retries=None) -> EmbeddingResponse:
        assert len(inputs) <= self.max_inputs
        tokens = sum(self.counter(t) for t in inputs)
        assert tokens <= self.max_tokens
        self.requests.append(list(inputs))
        self.retries_seen.append(retries)
        vecs = HashEmbedder().embed(inputs)
        return EmbeddingResponse(
            id="emb-test", object="list", model=model,
            usage=UsageInfo(prompt_tokens=tokens, completion_tokens=0, total_tokens=tokens),
            data=[EmbeddingResponseData(object="embedding", embedding=v.tolist(), index=i)
                  for i, v in reversed(list(enumerate(vecs)))],  # out of order on purpose
        )


class FakeClient:
    def __init__(self, max_inputs=512, max_tokens=16_384, counter=len) -> None:
        self.embeddings = FakeEmbeddings(max_inputs, max_tokens, counter)


def word_count(text: str) -> int:
    return len(text.split()) + 1


# ---------------------------------------------------------------- chunking
def test_fixed_chunks_are_the_seeds_windows():
    chunks = chunk_fixed(TEXT, 100)
    assert len(chunks) == -(-len(TEXT) // 100)
    assert all(c.text == TEXT[c.start:c.end] for c in chunks)
    assert all(len(c.text) == 100 for c in chunks[:-1])
    assert "".join(c.text for c in chunks) == TEXT
    assert [c.id for c in chunks[:3]] == ["c000", "c001", "c002"]


def test_sentence_chunks_respect_size_keep_offsets_and_overlap():
    chunks = chunk_sentences(TEXT, max_chars=120, overlap=1)
    assert all(len(c.text) <= 120 for c in chunks)
    assert all(c.text == TEXT[c.start:c.end] for c in chunks)
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.start < a.end, "overlap=1 repeats the last sentence of the previous chunk"
        assert b.start > a.start, "chunking always moves forward"
    assert chunks[-1].end == len(TEXT.rstrip())
    no_overlap = chunk_sentences(TEXT, max_chars=120, overlap=0)
    assert all(b.start >= a.end for a, b in zip(no_overlap, no_overlap[1:], strict=False))
    assert len(no_overlap) < len(chunks)


def test_sentence_chunks_never_cut_a_sentence_that_fits():
    chunks = chunk_sentences(TEXT, max_chars=200, overlap=0)
    for c in chunks:
        assert c.text[-1] in ".!?", c.text


def test_overlong_sentence_is_split_at_words():
    text = "word " * 100
    chunks = chunk_sentences(text, max_chars=50, overlap=0)
    assert all(len(c.text) <= 50 for c in chunks)
    assert all(not c.text.startswith(" ") for c in chunks)


@pytest.mark.parametrize("bad", ["", "   \n\t "])
def test_empty_document_is_a_clear_error(bad):
    with pytest.raises(RagError, match="empty"):
        chunk_fixed(bad)
    with pytest.raises(RagError, match="empty"):
        chunk_sentences(bad, 512, 1)


# ---------------------------------------------------------------- batching
@settings(max_examples=200, deadline=None, derandomize=True, database=None)  # the same examples on every run
@given(
    counts=st.lists(st.integers(min_value=1, max_value=3000), max_size=1500),
    max_inputs=st.integers(min_value=1, max_value=512),
    max_tokens=st.integers(min_value=3000, max_value=16_384),
)
def test_batches_never_exceed_either_limit_and_keep_every_input_once(counts, max_inputs, max_tokens):
    batches = plan_batches(counts, max_inputs, max_tokens)
    assert [i for b in batches for i in b] == list(range(len(counts)))
    for b in batches:
        assert 1 <= len(b) <= max_inputs
        assert sum(counts[i] for i in b) <= max_tokens
    # greedy packing: a batch is only closed when the next input would break a limit
    for b, nxt in zip(batches, batches[1:], strict=False):
        assert len(b) == max_inputs or sum(counts[i] for i in b) + counts[nxt[0]] > max_tokens


def test_batches_use_ceil_n_over_512_requests_when_tokens_allow():
    assert len(plan_batches([10] * 1025)) == math.ceil(1025 / rag.EMBED_MAX_INPUTS) == 3


def test_single_input_over_the_token_limit_is_a_clear_error():
    with pytest.raises(RagError, match="smaller chunks"):
        plan_batches([10, 20_000, 10])


def test_token_counting_uses_the_mistral_tokenizer():
    assert rag.count_tokens("What is the capital of France?") == 8  # BOS + 7 pieces, v3 tokenizer
    assert rag.count_tokens("word " * 100) > 100


# ---------------------------------------------------------------- ApiEmbedder + cache
def test_api_embedder_batches_within_limits_and_caches(tmp_path):
    client = FakeClient(max_inputs=7, max_tokens=60, counter=word_count)
    texts = [f"payment number {i} " + "x " * (i % 9) for i in range(40)]
    emb = rag.ApiEmbedder(client, served_by="test", cache=tmp_path / "c.sqlite", max_inputs=7,
                          max_tokens=60, token_counter=word_count, progress=False, retries="RETRY")
    first = emb.embed(texts)
    assert first.shape == (40, 32) and first.dtype == np.float32
    assert np.allclose(first, HashEmbedder().embed(texts)), "vectors come back in input order"
    assert emb.requests == len(client.embeddings.requests) >= 6
    assert all(r == "RETRY" for r in client.embeddings.retries_seen), "the SDK's RetryConfig is passed"
    assert emb.cache_hits == 0 and emb.inputs_sent == 40

    emb.reset_stats()
    again = emb.embed(texts)
    assert emb.requests == 0 and emb.cache_hits == 40
    assert np.array_equal(first, again)

    # a new embedder over the same cache file (a rerun) pays nothing either
    rerun = rag.ApiEmbedder(client, served_by="test", cache=tmp_path / "c.sqlite", progress=False,
                            token_counter=word_count)
    rerun.embed(texts[:5] + ["a brand new text"])
    assert rerun.requests == 1 and rerun.cache_hits == 5 and rerun.inputs_sent == 1


def test_cache_is_keyed_by_model_too(tmp_path):
    client = FakeClient()
    a = rag.ApiEmbedder(client, served_by="server-a", cache=tmp_path / "c.sqlite", progress=False)
    b = rag.ApiEmbedder(client, served_by="server-b", cache=tmp_path / "c.sqlite", progress=False)
    a.embed(["same text"])
    b.embed(["same text"])
    assert (a.requests, b.requests, b.cache_hits) == (1, 1, 0)
    assert a.model_id == "mistral-embed@server-a" != b.model_id


def test_api_embedder_rejects_empty_text(tmp_path):
    emb = rag.ApiEmbedder(FakeClient(), served_by="t", cache=None, progress=False)
    with pytest.raises(RagError, match="empty"):
        emb.embed(["fine", "  "])


# ---------------------------------------------------------------- index
@pytest.fixture
def index():
    return VectorIndex.build(chunk_sentences(TEXT, 120, 0), HashEmbedder(), metric="cosine")


def test_search_finds_the_chunk_sharing_the_words(index):
    hits = index.search("replacement card costs euros", k=3)
    assert [h.rank for h in hits] == [1, 2, 3]
    assert "replacement card" in hits[0].chunk.text
    assert hits[0].score >= hits[1].score  # cosine: higher is closer


def test_l2_index_scores_are_distances():
    ix = VectorIndex.build(chunk_fixed(TEXT, 80), HashEmbedder(), metric="l2")
    hits = ix.search("instant transfers are free", k=4)
    assert hits[0].score <= hits[-1].score


def test_bad_queries_are_clear_errors(index):
    with pytest.raises(RagError, match="empty"):
        index.search("   ", k=1)
    with pytest.raises(RagError, match=f"index holds {len(index)} chunks"):
        index.search("cards", k=len(index) + 1)
    with pytest.raises(RagError, match="metric"):
        VectorIndex.build(chunk_fixed(TEXT), HashEmbedder(), metric="dot")


def test_save_load_round_trip(index, tmp_path):
    path = index.save(tmp_path / "idx" / "handbook.npz")
    loaded = VectorIndex.load(path, HashEmbedder())
    assert loaded.chunks == index.chunks and loaded.metric == "cosine" and len(loaded) == len(index)
    q = "express cards cost"
    assert [(h.chunk.id, round(h.score, 5)) for h in loaded.search(q, 3)] == \
        [(h.chunk.id, round(h.score, 5)) for h in index.search(q, 3)]


def test_loading_with_another_embedder_fails_clearly(index, tmp_path):
    path = index.save(tmp_path / "handbook.npz")
    with pytest.raises(IndexMismatchError, match="built with 'hash-32'.*other-model"):
        VectorIndex.load(path, HashEmbedder(model_id="other-model"))
    with pytest.raises(IndexMismatchError, match="32-dim.*64-dim"):
        VectorIndex.load(path, HashEmbedder(dim=64))


def test_failed_save_leaves_the_existing_index_intact(index, tmp_path, monkeypatch):
    path = index.save(tmp_path / "handbook.npz")
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(rag.np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        index.save(path)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path], "no temp file left behind"
    monkeypatch.undo()
    assert len(VectorIndex.load(path, HashEmbedder())) == len(index)


# ---------------------------------------------------------------- evaluation
def test_metrics_on_a_known_toy_case():
    m = retrieval_metrics([1, 2, None, 4], ks=(1, 3, 5))
    assert m["hit_rate_at_1"] == 0.25
    assert m["hit_rate_at_3"] == 0.5
    assert m["hit_rate_at_5"] == 0.75
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 4) / 4)


def test_relevance_needs_most_of_the_answer_passage():
    item = EvalItem("q", "?", "x" * 10, start=100, end=110)
    assert retrieval.is_relevant(Chunk("a", "", 95, 106), item)       # 6 of 10 chars
    assert not retrieval.is_relevant(Chunk("b", "", 106, 200), item)  # 4 of 10 chars
    assert not retrieval.is_relevant(Chunk("c", "", 0, 100), item)


def test_evaluate_end_to_end_on_a_toy_index():
    doc = "Alpha bananas are yellow. Beta cherries are red. Gamma grapes are green. Delta plums are purple."
    items = [EvalItem("q1", "cherries red", "Beta cherries are red.", *(lambda s: (s, s + 22))(doc.find("Beta"))),
             EvalItem("q2", "plums purple", "Delta plums are purple.", *(lambda s: (s, s + 23))(doc.find("Delta")))]
    ix = VectorIndex.build(chunk_sentences(doc, 30, 0), HashEmbedder(dim=256), metric="cosine")
    result = retrieval.evaluate(ix, items)
    assert result["hit_rate_at_1"] == 1.0 and result["mrr"] == 1.0 and result["ranks"] == {"q1": 1, "q2": 1}


def test_grounded_prompt_cites_ids_and_allows_i_dont_know():
    hits = [Hit(1, 0.9, Chunk("c004", "Cards cost 5 euros.", 0, 19)), Hit(2, 0.5, Chunk("c010", "Fees.", 20, 25))]
    prompt = rag.grounded_prompt("What does a card cost?", hits)
    assert "[c004] Cards cost 5 euros." in prompt and "[c010]" in prompt
    assert "I don't know" in prompt and "only the context" in prompt
    assert rag.cited_ids("It costs 5 euros [c004], see also [c010].") == ["c004", "c010"]
    with pytest.raises(RagError, match="empty"):
        rag.grounded_prompt(" ", hits)


def test_shipped_document_and_eval_set():
    doc = rag.load_document()
    items = retrieval.load_eval_set()
    assert len(doc.split()) > 3000
    assert len(items) >= 20 and len({i.id for i in items}) == len(items)
    assert all(doc[i.start:i.end] == i.answer for i in items)
    # every question has a key fact, and its own answer passage states it (so a right answer can be recognised)
    from helpers.course.verdicts import judge

    assert all(i.key for i in items)
    assert [i.id for i in items if not judge(i.answer, list(i.key), reject=i.reject).ok] == []
    assert not judge("Yes, they count.", list(items[1].key), reject=items[1].reject).ok  # q02's answer is no
    sections = rag.chunk_sections(doc)
    assert all(doc[c.start:c.end] == c.text for c in sections)
    assert [c.id for c in sections if not c.title] == ["c000"]  # only the intro under the document title


# ---------------------------------------------------------------- stable cache keys, bad files, bad eval input
class _ClientAt:
    def __init__(self, url):
        from mistralai.client import Mistral

        self.sdk_configuration = Mistral(api_key="x", server_url=url).sdk_configuration
        self.embeddings = FakeEmbeddings(512, 16_384, word_count)


def test_cache_key_is_a_pure_function_of_the_settings(tmp_path, monkeypatch, clean_settings_env):
    import httpx

    from helpers import settings

    def no_probe(*args, **kwargs):
        raise AssertionError("the cache key must not depend on a network probe")

    monkeypatch.setattr(httpx, "get", no_probe)
    cfg = settings.resolve(BACKEND="local")
    monday = rag.ApiEmbedder.for_settings(_ClientAt("http://127.0.0.1:41001"), cfg, cache=tmp_path / "c.sqlite",
                                          progress=False, token_counter=word_count)
    tuesday = rag.ApiEmbedder.for_settings(_ClientAt("http://127.0.0.1:41002/"), cfg, cache=tmp_path / "c.sqlite",
                                           progress=False, token_counter=word_count)
    assert monday.model_id == tuesday.model_id == f"mistral-embed@{cfg.local_embed_model}"
    monday.embed(["same text"])
    tuesday.embed(["same text"])
    assert (tuesday.requests, tuesday.cache_hits) == (0, 1), "a restart on another port still hits the cache"
    # an external server (LOCAL_URL) and a bare client are named by their URL, as given; the official API by nothing
    external = settings.resolve(BACKEND="local", LOCAL_URL="http://127.0.0.1:8000/")
    assert rag.ApiEmbedder.for_settings(_ClientAt("http://127.0.0.1:8000"), external, cache=None,
                                        progress=False).model_id == "mistral-embed@http://127.0.0.1:8000"
    assert embeddings.served_by_for_url("https://llm.example.com/v1/") == "https://llm.example.com/v1"
    official = rag.ApiEmbedder(_ClientAt("https://api.mistral.ai"), cache=None, progress=False)
    assert official.model_id == "mistral-embed"


def test_identical_texts_in_one_call_are_embedded_once(tmp_path):
    client = FakeClient()
    emb = rag.ApiEmbedder(client, served_by="t", cache=tmp_path / "c.sqlite", progress=False)
    texts = ["alpha", "beta", "alpha", "gamma", "beta", "alpha"]
    out = emb.embed(texts)
    assert emb.inputs_sent == 3 and emb.requests == 1
    assert np.allclose(out, HashEmbedder().embed(texts))  # every position still gets its vector


def test_a_save_cleans_orphan_temp_files_of_a_killed_save(tmp_path):
    import subprocess
    import sys

    index = rag.VectorIndex.build(rag.chunk_fixed("one two three four five six seven eight nine ten " * 20, 64),
                            HashEmbedder())
    target = tmp_path / "idx.npz"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    orphan = tmp_path / f"idx.npz.{dead}.abc123.tmp"  # what a save killed before its rename leaves
    orphan.write_bytes(b"half an index")
    legacy = tmp_path / "idx.npz.k2j4h5.tmp"  # an older, pid-less temp file, an hour old
    legacy.write_bytes(b"x")
    os.utime(legacy, (time.time() - 3600,) * 2)
    running = tmp_path / f"idx.npz.{os.getpid()}.zz9.tmp"  # a save in progress in a live process: kept
    running.write_bytes(b"x")
    other = tmp_path / "other.npz.123.abc.tmp"  # another index's file: not ours to touch
    other.write_bytes(b"x")
    index.save(target)
    assert not orphan.exists() and not legacy.exists()
    assert running.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.glob("idx.npz*")) == ["idx.npz", running.name]


@pytest.mark.parametrize("content", [b"", b"not an index at all", b"PK\x03\x04 truncated zip"])
def test_loading_a_foreign_or_corrupt_file_says_so_and_keeps_it(tmp_path, content):
    path = tmp_path / "handbook.npz"
    path.write_bytes(content)
    with pytest.raises(IndexFileError, match="not a course index or is corrupt.*Rebuild it"):
        VectorIndex.load(path, HashEmbedder())
    assert path.read_bytes() == content, "the file is left for the learner to inspect"


def test_loading_an_npz_that_is_not_an_index_or_is_damaged(index, tmp_path):
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.zeros(3))
    with pytest.raises(IndexFileError, match="not a course index"):
        VectorIndex.load(other, HashEmbedder())
    path = index.save(tmp_path / "handbook.npz")
    with np.load(path) as data:
        meta, raw = data["meta"], data["index"]
    np.savez(path, meta=meta, index=raw[: len(raw) // 2])  # the FAISS part cut in half
    with pytest.raises(IndexFileError, match="corrupt"):
        VectorIndex.load(path, HashEmbedder())


def test_evaluate_rejects_an_empty_eval_set_and_empty_ks(index):
    item = EvalItem("q1", "replacement card", "A replacement card costs 5 euros?", 0, 10)
    with pytest.raises(RagError, match="eval set is empty"):
        retrieval.evaluate(index, [])
    for ks in [(), (0, 3), "135"]:
        with pytest.raises(RagError, match="ks="):
            retrieval.evaluate(index, [item], ks=ks)
    with pytest.raises(RagError, match="ks="):
        retrieval_metrics([1], ks=())
    assert set(retrieval.evaluate(index, [item], ks=(2,))) >= {"hit_rate_at_2", "mrr"}


def test_embedding_progress_bar_only_for_someone_watching(monkeypatch):
    """Unattended runs (papermill, CI) show no bar: a saved notebook would keep its first frame, "0%", forever."""
    for name in ("CI", "COURSE_UNATTENDED", "PYTEST_CURRENT_TEST"):
        monkeypatch.delenv(name, raising=False)
    assert rag.ApiEmbedder(FakeClient(), served_by="t", cache=None).progress is True
    monkeypatch.setenv("COURSE_UNATTENDED", "1")
    assert rag.ApiEmbedder(FakeClient(), served_by="t", cache=None).progress is False
    assert rag.ApiEmbedder(FakeClient(), served_by="t", cache=None, progress=True).progress is True


def test_an_answer_that_hedges_between_amounts_is_wrong():
    from helpers.course.verdicts import judge

    items = {it.id.lower(): it for it in retrieval.load_eval_set(document=rag.load_document())}
    fee = items["q09"]  # 15 euros
    hedged = "15 euros per day, 20 euros per month, 20 euros per year"
    assert fee.rejects(hedged) == ["20 euros"]
    assert judge(hedged, list(fee.key), reject=fee.rejects(hedged)).kind == "wrong"
    assert fee.rejects("It costs 15 euros.") == [] and fee.rejects("It costs €15.") == []
    assert items["q06"].rejects("Up to 15,000 euros.") == []  # the same amount, written with a comma
    assert items["q04"].rejects("2.1% a year, not 3%") == ["3%"]  # percentages too
    assert items["q02"].rejects("Yes, 5 euros") == list(items["q02"].reject)  # a yes/no key: amounts are not checked
    from types import SimpleNamespace

    reply = SimpleNamespace(choices=[SimpleNamespace(finish_reason="stop", message=SimpleNamespace(content=hedged))])
    assert fee.rejects(reply) == ["20 euros"]  # an SDK response, as judge() takes it
