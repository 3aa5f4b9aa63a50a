"""Hybrid retrieval: BM25 keyword search (bm25s) beside the dense index, fused by reciprocal rank fusion.

    chunks → KeywordIndex (bm25s: English stopwords, Snowball stemmer) ┐
           → VectorIndex (FAISS, helpers.rag)                         ┴→ reciprocal_rank_fusion(k=60) → top-k Hits

Used by notebooks 05 (API embedder) and 08 (local embedder): `HybridIndex` has the same `search` / `search_many` /
`save` / `load` as `rag.VectorIndex`, so `rag.evaluate` and the grounded prompt work on it unchanged, and
`index.using("dense" | "bm25" | "hybrid")` gives each retriever alone for the side-by-side measurement.
Keyword search catches the exact terms (fees, day counts, product names) a sentence embedding blurs; fusing ranks
rather than scores needs no calibration between BM25 scores and cosine similarities (Cormack, Clarke & Büttcher,
SIGIR 2009: k = 60). `rerank` re-orders the fused top-k with a sentence-transformers CrossEncoder where one can load.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from .indexfile import read_npz, write_npz
from .rag import (
    Chunk,
    Embedder,
    Hit,
    IndexFileError,
    IndexMismatchError,
    RagError,
    VectorIndex,
    check_queries,
)

HYBRID_FORMAT = 2  # 1 = a dense-only index from an earlier version (loads: its BM25 part is rebuilt from its chunks)
RRF_K = 60  # Cormack, Clarke & Büttcher (2009): ranks below ~60 matter little, and no list dominates
CANDIDATES = 100  # each retriever's top-N that enters the fusion (TREC runs fuse 1,000; ≥ 10× any k asked for here)
MODES = ("hybrid", "dense", "bm25")
STOPWORDS = "en"
STEMMER = "english"
RERANK_MODEL = "cross-encoder/ms-marco-MiniLM-L6-v2"  # sentence-transformers' retrieve & re-rank docs use this one


def _stemmer() -> Any:
    import Stemmer  # PyStemmer: the Snowball stemmers, bm25s's recommended stemmer

    return Stemmer.Stemmer(STEMMER)


def tokenize(texts: Sequence[str]) -> Any:
    """bm25s tokens for `texts`: lower-cased words of 2+ characters, English stopwords out, Snowball-stemmed."""
    import bm25s

    return bm25s.tokenize(list(texts), stopwords=STOPWORDS, stemmer=_stemmer(), show_progress=False)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Fuse ranked lists of ids: score(d) = Σ 1 / (k + rank of d in each list), best first.

    Ties keep the order in which the ids first appear (the first list wins), so the result is deterministic.
    """
    if k < 0:
        raise RagError(f"k={k}: the RRF constant must be ≥ 0 (Cormack et al. use 60).")
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            scores[int(doc)] = scores.get(int(doc), 0.0) + 1.0 / (k + rank)
    order = {doc: i for i, doc in enumerate(scores)}  # first appearance
    return sorted(scores.items(), key=lambda item: (-item[1], order[item[0]]))


class KeywordIndex:
    """BM25 over the chunks' `search_text` with bm25s (its defaults: Lucene's scoring, k1 = 1.5, b = 0.75)."""

    def __init__(self, retriever: Any, n: int) -> None:
        self.retriever = retriever
        self.n = n

    @classmethod
    def build(cls, chunks: Sequence[Chunk]) -> KeywordIndex:
        import bm25s

        if not chunks:
            raise RagError("No chunks to index: the document was empty or chunking produced nothing.")
        retriever = bm25s.BM25()
        retriever.index(tokenize([c.search_text for c in chunks]), show_progress=False)
        return cls(retriever, len(chunks))

    def rank(self, queries: Sequence[str], depth: int) -> tuple[np.ndarray, np.ndarray]:
        """(chunk positions, BM25 scores), each of shape (len(queries), depth), best first."""
        depth = min(depth, self.n)
        ids, scores = self.retriever.retrieve(tokenize(queries), k=depth, show_progress=False, n_threads=0)
        return np.asarray(ids), np.asarray(scores)

    # -- persistence: bm25s saves to a folder; its files travel inside the one index file, as bytes
    def to_arrays(self) -> dict[str, np.ndarray]:
        with tempfile.TemporaryDirectory() as folder:
            self.retriever.save(folder)
            return {f"bm25/{p.name}": np.frombuffer(p.read_bytes(), dtype=np.uint8)
                    for p in sorted(Path(folder).iterdir()) if p.is_file()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], n: int) -> KeywordIndex:
        import bm25s

        with tempfile.TemporaryDirectory() as folder:
            for name, raw in arrays.items():
                if name.startswith("bm25/"):
                    (Path(folder) / Path(name).name).write_bytes(np.asarray(raw, dtype=np.uint8).tobytes())
            retriever = bm25s.BM25.load(folder)
        if int(retriever.scores["num_docs"]) != n:
            raise ValueError(f"the BM25 part indexes {retriever.scores['num_docs']} chunks, the file holds {n}")
        return cls(retriever, n)


class HybridIndex:
    """Dense (FAISS) and keyword (BM25) indexes over the same chunks, searched together and fused by RRF."""

    def __init__(self, dense: VectorIndex, keyword: KeywordIndex, mode: str = "hybrid", rrf_k: int = RRF_K,
                 candidates: int = CANDIDATES) -> None:
        if mode not in MODES:
            raise RagError(f"mode={mode!r}: use one of {MODES}.")
        self.dense, self.keyword, self.mode = dense, keyword, mode
        self.rrf_k, self.candidates = rrf_k, candidates
        self.upgraded_from: int | None = None  # set by `load` when the file came from an earlier version

    @classmethod
    def build(cls, chunks: list[Chunk], embedder: Embedder, metric: str = "cosine", **kwargs: Any) -> HybridIndex:
        """Embed and index the chunks (rag.VectorIndex.build) and BM25-index the same texts."""
        return cls(VectorIndex.build(chunks, embedder, metric=metric), KeywordIndex.build(chunks), **kwargs)

    def using(self, mode: str) -> HybridIndex:
        """The same index searched one way only: "dense", "bm25", or "hybrid" (both, fused)."""
        view = HybridIndex(self.dense, self.keyword, mode, self.rrf_k, self.candidates)
        view.upgraded_from = self.upgraded_from
        return view

    # what rag.evaluate and the prompts read, as on a VectorIndex
    @property
    def chunks(self) -> list[Chunk]:
        return self.dense.chunks

    @property
    def embedder(self) -> Embedder:
        return self.dense.embedder

    @property
    def model_id(self) -> str:
        return self.dense.model_id

    @property
    def dim(self) -> int:
        return self.dense.dim

    @property
    def metric(self) -> str:
        return self.dense.metric

    def __len__(self) -> int:
        return len(self.dense)

    def search(self, query: str, k: int = 3) -> list[Hit]:
        """The k best chunks for the question, best first (score: RRF, BM25 or the dense metric, by mode)."""
        return self.search_many([query], k)[0]

    def search_many(self, queries: list[str], k: int = 3) -> list[list[Hit]]:
        """`search` for several questions (embedded together: one request for the API embedder)."""
        check_queries(queries, k, len(self))
        if self.mode == "dense":
            return self.dense.search_many(queries, k)
        depth = max(k, min(self.candidates, len(self)))
        ids, scores = self.keyword.rank(queries, depth if self.mode == "hybrid" else k)
        if self.mode == "bm25":
            return [[Hit(r + 1, float(s), self.chunks[int(i)]) for r, (i, s) in enumerate(zip(row_i, row_s, strict=True))]
                    for row_i, row_s in zip(ids, scores, strict=True)]
        position = {id(c): j for j, c in enumerate(self.chunks)}
        out = []
        for dense_hits, keyword_ids in zip(self.dense.search_many(queries, depth), ids, strict=True):
            fused = reciprocal_rank_fusion([[position[id(h.chunk)] for h in dense_hits], keyword_ids], self.rrf_k)
            out.append([Hit(r + 1, s, self.chunks[j]) for r, (j, s) in enumerate(fused[:k])])
        return out

    # -- persistence: one file, the dense index's plus the BM25 part
    def save(self, path: str | os.PathLike) -> Path:
        """Write both indexes, the chunks, model id and dimension to one file, atomically (temp file, then rename)."""
        import faiss

        meta = {"format": HYBRID_FORMAT, "model_id": self.model_id, "dim": self.dim, "metric": self.metric,
                "count": len(self), "chunks": [asdict(c) for c in self.chunks],
                "bm25": {"library": "bm25s", "stopwords": STOPWORDS, "stemmer": STEMMER}}
        arrays = {"index": np.asarray(faiss.serialize_index(self.dense.index), dtype=np.uint8),
                  **self.keyword.to_arrays()}
        return write_npz(path, meta, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike, embedder: Embedder, **kwargs: Any) -> HybridIndex:
        """Read an index saved by `save`, or a dense-only one from an earlier version (its BM25 part is rebuilt from
        its chunks, in memory: the file is not touched). Fails clearly on another embedder or a damaged file."""
        path = Path(path)
        dense = VectorIndex.load(path, embedder)  # checks the file, the format, the model id and the dimension
        meta, arrays = read_npz(path)
        if meta["format"] == 1:
            index = cls(dense, KeywordIndex.build(dense.chunks), **kwargs)
            index.upgraded_from = 1
            return index
        if not any(name.startswith("bm25/") for name in arrays):
            raise IndexFileError(f"{path} says it is a hybrid index but holds no BM25 part. Rebuild it with "
                                 "HybridIndex.build(chunks, embedder).save(path), which replaces the file.")
        settings = meta.get("bm25", {})
        if settings.get("stopwords") != STOPWORDS or settings.get("stemmer") != STEMMER:
            raise IndexMismatchError(f"{path} was keyword-indexed with {settings}, this version tokenizes with "
                                     f"stopwords={STOPWORDS!r}, stemmer={STEMMER!r}: rebuild the index.")
        try:
            keyword = KeywordIndex.from_arrays(arrays, len(dense))
        except Exception as exc:
            raise IndexFileError(f"{path}: its BM25 part is damaged ({type(exc).__name__}: {exc}). Rebuild it with "
                                 "HybridIndex.build(chunks, embedder).save(path), which replaces the file.") from None
        return cls(dense, keyword, **kwargs)


# ---------------------------------------------------------------- reranking (needs the model from the hub)
def reranker_available(model_id: str = RERANK_MODEL) -> tuple[bool, str]:
    """Whether `load_reranker` can work here, decided without touching the network: in Colab (the hub is reachable),
    or when the model is already in the Hugging Face cache. Offline CI and keyless machines get False and why."""
    import sys

    if "google.colab" in sys.modules:
        return True, "in Colab: the Hugging Face hub is reachable"
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(model_id, "config.json"), str):
        return True, f"{model_id} is in the Hugging Face cache"
    return False, (f"{model_id} is not in the Hugging Face cache and no package on PyPI ships a cross-encoder for "
                   "offline use; run in Colab (or anywhere the hub is reachable, after one download) to rerank")


def load_reranker(model_id: str = RERANK_MODEL, device: str = "cpu") -> Any:
    """A sentence-transformers CrossEncoder; offline (no hub, not cached) it raises RerankUnavailable, saying so."""
    from sentence_transformers import CrossEncoder

    try:
        return CrossEncoder(model_id, device=device)
    except (OSError, ValueError) as exc:  # the hub's errors are OSErrors
        raise RerankUnavailable(
            f"Cannot load the cross-encoder {model_id!r} ({type(exc).__name__}): it comes from the Hugging Face hub "
            "and no package ships one for offline use. Run where the hub is reachable (e.g. Colab) to rerank; "
            "retrieval works without it.") from exc


class RerankUnavailable(RuntimeError):
    """No cross-encoder could be loaded (offline, no cached copy)."""


def rerank(model: Any, query: str, hits: Sequence[Hit], k: int | None = None) -> list[Hit]:
    """Re-order retrieved hits by a cross-encoder's relevance score for (query, chunk); score = that relevance."""
    if not hits:
        return []
    ranked = model.rank(query, [h.chunk.search_text for h in hits], top_k=k or len(hits))
    return [replace(hits[r["corpus_id"]], rank=i + 1, score=float(r["score"])) for i, r in enumerate(ranked)]
