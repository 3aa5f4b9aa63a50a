"""helpers.hybrid: BM25 finds exact terms, RRF is Cormack et al.'s formula, the hybrid index saves and loads with its
BM25 part, an index from the earlier (dense-only) format loads, a damaged one fails clearly, reranking stops at the
network boundary."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from helpers import hybrid, rag
from helpers.hybrid import HybridIndex, KeywordIndex, reciprocal_rank_fusion

DOC = """# Bank

## Fees

A paper statement costs 2 euros. Express cards cost 20 euros and arrive in two days.

## Transfers

### Instant

Instant transfers arrive within ten seconds. The largest instant transfer is 15,000 euros.

### Recalls

Recalling a standard transfer costs 15 euros, whether or not the recall succeeds.
"""


class WordHash:
    """Deterministic bag-of-words vectors; no model, no network."""

    model_id, dim = "word-hash-64", 64

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.md5(word.strip(".,?!").encode()).hexdigest(), 16) % self.dim] += 1.0
        return out + 1e-3


@pytest.fixture
def index():
    return HybridIndex.build(rag.chunk_sections(DOC, max_chars=90, overlap=0), WordHash())


def test_sections_never_cross_a_heading_and_carry_their_path():
    chunks = rag.chunk_sections(DOC, max_chars=90, overlap=0)
    assert all(DOC[c.start:c.end] == c.text and "#" not in c.text for c in chunks)
    recall = next(c for c in chunks if "Recalling" in c.text)
    assert recall.title == "Transfers > Recalls"  # level 1 (the document title) is left out
    assert recall.search_text.startswith("Transfers > Recalls\n")
    assert rag.chunk_sections("No headings. Just text.") == rag.chunk_sentences("No headings. Just text.")


def test_rrf_is_the_sum_of_reciprocal_ranks():
    fused = dict(reciprocal_rank_fusion([[7, 3, 5], [3, 9]], k=60))
    assert fused[3] == pytest.approx(1 / 62 + 1 / 61)
    assert fused[7] == pytest.approx(1 / 61) and fused[9] == pytest.approx(1 / 62)
    assert [d for d, _ in reciprocal_rank_fusion([[7, 3, 5], [3, 9]])][0] == 3  # in both lists beats first in one
    assert [d for d, _ in reciprocal_rank_fusion([[1, 2], [2, 1]])] == [1, 2]  # a tie keeps first appearance
    with pytest.raises(rag.RagError):
        reciprocal_rank_fusion([[1]], k=-1)


def test_bm25_finds_the_exact_term_and_stems(index):
    top = index.using("bm25").search("recalled", k=1)[0]
    assert "Recalling" in top.chunk.text and top.score > 0  # "recalled" is in no chunk: only its stem matches
    ids, scores = index.keyword.rank(["express card"], depth=3)
    assert "Express" in index.chunks[int(ids[0][0])].text and scores[0][0] > scores[0][-1]


def test_modes_differ_and_hybrid_ranks_every_chunk_once(index):
    q = "How much does recalling a transfer cost?"
    hybrid_hits = index.search(q, k=len(index))
    assert sorted(h.chunk.id for h in hybrid_hits) == sorted(c.id for c in index.chunks)
    assert [h.rank for h in hybrid_hits] == list(range(1, len(index) + 1))
    assert all(a.score >= b.score for a, b in zip(hybrid_hits, hybrid_hits[1:], strict=False))
    assert index.using("dense").search(q, 2)[0].score <= 1.0 + 1e-6  # cosine, not RRF
    with pytest.raises(rag.RagError, match="mode"):
        index.using("sparse")
    with pytest.raises(rag.RagError, match="k="):
        index.search(q, k=len(index) + 1)


def test_evaluate_works_on_every_mode(index):
    item = rag.EvalItem("x", "largest instant transfer", "The largest instant transfer is 15,000 euros.",
                        DOC.index("The largest"), DOC.index("The largest") + 45)
    for mode in hybrid.MODES:
        m = rag.evaluate(index.using(mode), [item], ks=(1, 3))
        assert m["ranks"]["x"] is not None and 0 < m["mrr"] <= 1


def test_save_and_load_keep_both_parts(index, tmp_path):
    path = index.save(tmp_path / "h.npz")
    loaded = HybridIndex.load(path, WordHash())
    assert loaded.upgraded_from is None
    for mode in hybrid.MODES:
        q = "express card in two days"
        assert [h.chunk.id for h in loaded.using(mode).search(q, 3)] == [h.chunk.id for h in index.using(mode).search(q, 3)]
    assert loaded.chunks[0].title == index.chunks[0].title
    assert any(name.startswith("bm25/") for name in np.load(path).files)
    # the dense part of a hybrid file is still readable as a VectorIndex
    assert len(rag.VectorIndex.load(path, WordHash())) == len(index)


def test_a_dense_index_from_the_earlier_format_loads_and_is_left_untouched(index, tmp_path):
    old = index.dense.save(tmp_path / "old.npz")  # format 1, no BM25 part
    before = old.read_bytes()
    loaded = HybridIndex.load(old, WordHash())
    assert loaded.upgraded_from == 1
    assert [h.chunk.id for h in loaded.search("recall fee", 2)] == [h.chunk.id for h in index.search("recall fee", 2)]
    assert old.read_bytes() == before


def test_a_damaged_bm25_part_or_an_unknown_format_fails_clearly(index, tmp_path):
    from helpers.indexfile import read_npz, write_npz

    path = index.save(tmp_path / "h.npz")
    meta, arrays = read_npz(path)
    arrays["bm25/params.index.json"] = np.frombuffer(b"{not json", dtype=np.uint8)
    write_npz(tmp_path / "bad.npz", meta, arrays)
    with pytest.raises(rag.IndexFileError, match="BM25 part is damaged"):
        HybridIndex.load(tmp_path / "bad.npz", WordHash())
    write_npz(tmp_path / "none.npz", meta, {"index": arrays["index"]})
    with pytest.raises(rag.IndexFileError, match="no BM25 part"):
        HybridIndex.load(tmp_path / "none.npz", WordHash())
    write_npz(tmp_path / "future.npz", {**meta, "format": 9}, arrays)
    with pytest.raises(rag.RagError, match="format 9"):
        HybridIndex.load(tmp_path / "future.npz", WordHash())
    with pytest.raises(rag.IndexMismatchError):
        HybridIndex.load(path, _Other())


class _Other(WordHash):
    model_id = "another-model"


def test_keyword_index_round_trips_through_arrays(index):
    arrays = index.keyword.to_arrays()
    again = KeywordIndex.from_arrays(arrays, index.keyword.n)
    a, _ = index.keyword.rank(["instant transfer"], 3)
    b, _ = again.rank(["instant transfer"], 3)
    assert a.tolist() == b.tolist()
    with pytest.raises(ValueError, match="indexes"):
        KeywordIndex.from_arrays(arrays, index.keyword.n + 1)


# ---------------------------------------------------------------- reranking, up to the network boundary
class FakeCrossEncoder:
    """Scores a (query, passage) pair by shared words: what `CrossEncoder.rank` returns, without a model."""

    def rank(self, query, documents, top_k=None):
        q = set(query.lower().split())
        scored = [{"corpus_id": i, "score": float(len(q & set(d.lower().split())))} for i, d in enumerate(documents)]
        return sorted(scored, key=lambda r: -r["score"])[:top_k]


def test_rerank_reorders_by_the_cross_encoder(index):
    hits = index.using("dense").search("recalling a standard transfer costs", k=len(index))
    reranked = hybrid.rerank(FakeCrossEncoder(), "recalling a standard transfer costs", hits, k=2)
    assert len(reranked) == 2 and [h.rank for h in reranked] == [1, 2]
    assert "Recalling" in reranked[0].chunk.text and reranked[0].score >= reranked[1].score
    assert hybrid.rerank(FakeCrossEncoder(), "q", []) == []


def test_loading_the_cross_encoder_offline_says_why(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import sentence_transformers

    def refuse(model_id, device=None):
        assert model_id == hybrid.RERANK_MODEL
        raise OSError("We couldn't connect to 'https://huggingface.co' (offline)")

    monkeypatch.setattr(sentence_transformers, "CrossEncoder", refuse)
    with pytest.raises(hybrid.RerankUnavailable, match="no package ships one"):
        hybrid.load_reranker()


def test_reranker_availability_is_decided_without_the_network(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: None)
    ok, why = hybrid.reranker_available("cross-encoder/some-model")
    assert not ok and "not in the Hugging Face cache" in why
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: str(tmp_path / name))
    assert hybrid.reranker_available("cross-encoder/some-model")[0]
