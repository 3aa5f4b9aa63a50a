"""helpers.hybrid: BM25 finds exact terms, RRF is Cormack et al.'s formula, the convex fusion is its weighted sum of
min-max scores, a chunk's dense score counts its best sentence, alpha is chosen on a dev set by the stated rule, the
hybrid index saves and loads with its BM25 and sentence parts, indexes from the earlier formats load, a damaged one
fails clearly, reranking stops at the network boundary."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from helpers import hybrid, rag, rerank
from helpers.course.evals import retrieval
from helpers.hybrid import HybridIndex, KeywordIndex, convex_fusion, reciprocal_rank_fusion

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


def test_convex_fusion_is_the_weighted_sum_of_min_max_scores():
    fused = dict(convex_fusion({1: 0.9, 2: 0.5, 3: 0.1}, {2: 8.0, 4: 2.0}, alpha=0.8))
    assert fused[1] == pytest.approx(0.8 * 1.0)  # dense best, absent from BM25: 0 there
    assert fused[2] == pytest.approx(0.8 * 0.5 + 0.2 * 1.0)
    assert fused[3] == pytest.approx(0.0) and fused[4] == pytest.approx(0.0)
    assert [d for d, _ in convex_fusion({1: 0.9, 2: 0.5}, {2: 8.0, 1: 1.0}, alpha=0.2)][0] == 2  # BM25-heavy weight
    assert [d for d, _ in convex_fusion({1: 1.0, 2: 1.0}, {})] == [1, 2]  # equal scores: first appearance
    with pytest.raises(rag.RagError, match="alpha"):
        convex_fusion({1: 1.0}, {1: 1.0}, alpha=1.5)


def test_a_chunk_is_scored_by_its_best_sentence_as_well_as_its_whole_text():
    # one long chunk whose second sentence is the question's topic, against a short chunk that shares a word
    doc = ("## A\n\nOne two three four five six seven eight nine ten. Express cards arrive in two days.\n\n"
           "## B\n\nCards.\n")
    ix = HybridIndex.build(rag.chunk_sections(doc, max_chars=200, overlap=0), WordHash())
    texts, owner = hybrid.sentence_texts(ix.chunks)
    assert texts[1] == "A\nExpress cards arrive in two days." and owner.tolist() == [0, 0, 1]
    q = ["express cards arrive in two days"]
    whole = ix.dense.search_many(q, 2)[0]
    scores = ix.dense_scores(q)[0]
    vecs = rag.VectorIndex._prepare(WordHash().embed(q + texts), "cosine")
    assert scores[0] == pytest.approx(whole[[h.chunk.id for h in whole].index(ix.chunks[0].id)].score
                                      + float(vecs[0] @ vecs[2]), abs=1e-5)
    assert ix.using("dense").search(q[0], 1)[0].chunk.id == ix.chunks[0].id


def test_choose_alpha_takes_the_best_dev_mrr_and_reports_every_weight(index):
    dev = [retrieval.EvalItem("a", "largest instant transfer", "The largest instant transfer is 15,000 euros.",
                        DOC.index("The largest"), DOC.index("The largest") + 45),
           retrieval.EvalItem("b", "recall costs", "Recalling a standard transfer costs 15 euros",
                        DOC.index("Recalling"), DOC.index("Recalling") + 44)]
    alpha, tried = retrieval.choose_alpha(index, dev, grid=(0.3, 0.8))
    assert set(tried) == {0.3, 0.8} and alpha in tried
    assert tried[alpha]["mrr"] == max(t["mrr"] for t in tried.values())
    assert index.using(alpha=alpha).alpha == alpha and index.alpha == hybrid.ALPHA  # a view; the index is unchanged


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
    assert 1.0 < index.using("dense").search(q, 2)[0].score <= 2.0 + 1e-6  # chunk + best sentence cosine, not fused
    with pytest.raises(rag.RagError, match="mode"):
        index.using("sparse")
    with pytest.raises(rag.RagError, match="k="):
        index.search(q, k=len(index) + 1)


def test_evaluate_works_on_every_mode(index):
    item = retrieval.EvalItem("x", "largest instant transfer", "The largest instant transfer is 15,000 euros.",
                        DOC.index("The largest"), DOC.index("The largest") + 45)
    for mode in hybrid.MODES:
        m = retrieval.evaluate(index.using(mode), [item], ks=(1, 3))
        assert m["ranks"]["x"] is not None and 0 < m["mrr"] <= 1


def test_save_and_load_keep_both_parts(index, tmp_path):
    path = index.save(tmp_path / "h.npz")
    loaded = HybridIndex.load(path, WordHash())
    assert loaded.upgraded_from is None and (loaded.fusion, loaded.alpha) == (index.fusion, index.alpha)
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


def test_a_hybrid_index_without_sentences_loads_with_them_rebuilt(index, tmp_path):
    from helpers.indexfile import read_npz, write_npz

    meta, arrays = read_npz(index.save(tmp_path / "h.npz"))
    meta = {k: v for k, v in meta.items() if k != "fusion"} | {"format": 2}  # as the previous version wrote it
    write_npz(tmp_path / "v2.npz", meta, {k: v for k, v in arrays.items() if not k.startswith("sentences/")})
    before = (tmp_path / "v2.npz").read_bytes()
    loaded = HybridIndex.load(tmp_path / "v2.npz", WordHash())
    assert loaded.upgraded_from == 2 and loaded.sentences.index.ntotal == index.sentences.index.ntotal
    q = "express card in two days"
    assert [h.chunk.id for h in loaded.search(q, 3)] == [h.chunk.id for h in index.search(q, 3)]
    assert (tmp_path / "v2.npz").read_bytes() == before


def test_a_damaged_bm25_part_or_an_unknown_format_fails_clearly(index, tmp_path):
    from helpers.indexfile import read_npz, write_npz

    path = index.save(tmp_path / "h.npz")
    meta, arrays = read_npz(path)
    arrays["bm25/params.index.json"] = np.frombuffer(b"{not json", dtype=np.uint8)
    write_npz(tmp_path / "bad.npz", meta, arrays)
    with pytest.raises(rag.IndexFileError, match="BM25 part is damaged"):
        HybridIndex.load(tmp_path / "bad.npz", WordHash())
    write_npz(tmp_path / "none.npz", meta, {k: v for k, v in arrays.items() if not k.startswith("bm25/")})
    with pytest.raises(rag.IndexFileError, match="no BM25 part"):
        HybridIndex.load(tmp_path / "none.npz", WordHash())
    write_npz(tmp_path / "nosent.npz", meta, {k: v for k, v in arrays.items() if k != "sentences/owner"})
    with pytest.raises(rag.IndexFileError, match="sentence part"):
        HybridIndex.load(tmp_path / "nosent.npz", WordHash())
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
    reranked = rerank.rerank(FakeCrossEncoder(), "recalling a standard transfer costs", hits, k=2)
    assert len(reranked) == 2 and [h.rank for h in reranked] == [1, 2]
    assert "Recalling" in reranked[0].chunk.text and reranked[0].score >= reranked[1].score
    assert rerank.rerank(FakeCrossEncoder(), "q", []) == []


def test_loading_the_cross_encoder_offline_says_why(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import sentence_transformers

    def refuse(model_id, device=None):
        assert model_id == rerank.RERANK_MODEL
        raise OSError("We couldn't connect to 'https://huggingface.co' (offline)")

    monkeypatch.setattr(sentence_transformers, "CrossEncoder", refuse)
    with pytest.raises(rerank.RerankUnavailable, match="no package ships one"):
        rerank.load_reranker()


def test_reranker_availability_asks_the_cache_then_the_hub_once_briefly(monkeypatch, tmp_path):
    import huggingface_hub

    asked = []

    def hub_down(repo, timeout=None):
        asked.append(timeout)
        raise OSError("503 Service Unavailable")

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: None)
    monkeypatch.setattr(huggingface_hub, "model_info", hub_down)
    ok, why = rerank.reranker_available("cross-encoder/some-model")
    assert not ok and "did not answer within 3 s" in why and asked == [3.0]  # one question, three seconds
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: str(tmp_path / name))
    assert rerank.reranker_available("cross-encoder/some-model")[0]


def test_rerank_auto_degrades_in_colab_with_the_hub_down_and_true_still_fails_loudly(monkeypatch):
    """Colab as it was: 'in Colab' counted as 'the hub is reachable', so RERANK='auto' raised after ~46 s of retries."""
    import sys
    import types

    import huggingface_hub
    import sentence_transformers

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: None)
    monkeypatch.setattr(huggingface_hub, "model_info", lambda repo, timeout=None: (_ for _ in ()).throw(
        OSError("We couldn't connect to 'https://huggingface.co'")))

    def refuse(model_id, device=None):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(sentence_transformers, "CrossEncoder", refuse)
    model, status = rerank.reranker_for("auto")
    assert model is None and status.startswith("skipped:") and "did not answer" in status
    assert rerank.reranker_for(False) == (None, "skipped: RERANK=False")
    with pytest.raises(rerank.RerankUnavailable, match="RERANK='auto' to skip it"):
        rerank.reranker_for(True)
