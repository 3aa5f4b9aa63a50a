"""Hybrid retrieval: BM25 keyword search (bm25s) beside dense search, fused by a weighted sum of normalised scores.

    chunks → KeywordIndex (bm25s: English stopwords, Snowball stemmer)                       ┐
           → VectorIndex (FAISS, helpers.rag) + SentenceIndex (FAISS over each chunk's sentences) ┴→ fusion → top-k Hits

Used by notebooks 05 (API embedder) and 08 (local embedder): `HybridIndex` has the same `search` / `search_many` /
`save` / `load` as `rag.VectorIndex`, so `retrieval.evaluate` and the grounded prompt work on it unchanged, and
`index.using("dense" | "bm25" | "hybrid")` gives each retriever alone for the side-by-side measurement.
Dense score of a chunk = its own similarity to the question + that of its best sentence (heading path in front): a
question usually matches one sentence, and one vector pooled over a whole chunk dilutes it. Keyword search catches the
exact terms (fees, day counts, product names) an embedding blurs. Fusion: `convex_fusion` (the default; min-max
normalised scores, weight `alpha` on dense; Bruch, Gai & Ingber, ACM TOIS 2023, find it beats RRF in and out of domain
and its one weight is sample-efficient to set) with `alpha` chosen on a development set by `choose_alpha`, never on the
eval set; or `reciprocal_rank_fusion` (Cormack, Clarke & Büttcher, SIGIR 2009: k = 60), which needs no weight.
Reranking the fused top-k with a cross-encoder lives in `rerank.py`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
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
    split_sentences,
)

HYBRID_FORMAT = 3  # earlier files load: 1 = dense only (BM25 and sentences rebuilt), 2 = no sentence part (rebuilt)
RRF_K = 60  # Cormack, Clarke & Büttcher (2009): ranks below ~60 matter little, and no list dominates
CANDIDATES = 100  # each retriever's top-N that enters the fusion (TREC runs fuse 1,000; ≥ 10× any k asked for here)
MODES = ("hybrid", "dense", "bm25")
FUSIONS = ("convex", "rrf")
ALPHA = 0.8  # choose_alpha's pick for all-MiniLM-L6-v2 + bm25s on data/handbook_dev.json (05 and 08 rerun the choice)
STOPWORDS = "en"
STEMMER = "english"


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


def _minmax(scores: dict[int, float]) -> dict[int, float]:
    lo, hi = min(scores.values()), max(scores.values())
    return {d: (s - lo) / (hi - lo) if hi > lo else 0.0 for d, s in scores.items()}


def convex_fusion(dense: dict[int, float], keyword: dict[int, float], alpha: float = ALPHA) -> list[tuple[int, float]]:
    """Fuse two retrievers' {id: score}: alpha × dense + (1 − alpha) × BM25, each min-max scaled to [0, 1] over its own
    candidates (an id one retriever did not return gets 0 there). Best first; ties keep first appearance."""
    _check_alpha(alpha)
    d, w = (_minmax(x) if x else {} for x in (dense, keyword))
    ids = list(dict.fromkeys([*dense, *keyword]))
    fused = {i: alpha * d.get(i, 0.0) + (1.0 - alpha) * w.get(i, 0.0) for i in ids}
    return sorted(fused.items(), key=lambda item: -item[1])  # a stable sort: ties stay in `ids` order


def _check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise RagError(f"alpha={alpha}: the weight on the dense score must be between 0 and 1.")


def sentence_texts(chunks: Sequence[Chunk]) -> tuple[list[str], np.ndarray]:
    """Every sentence of every chunk with the chunk's heading path in front (a sentence alone may lose its subject),
    and the position of the chunk each belongs to."""
    texts, owner = [], []
    for j, c in enumerate(chunks):
        for a, b in split_sentences(c.text):
            texts.append(f"{c.title}\n{c.text[a:b]}" if c.title else c.text[a:b])
            owner.append(j)
    return texts, np.asarray(owner, dtype=np.int64)


class SentenceIndex:
    """A flat FAISS index over the chunks' sentences (same metric as the chunk index), and which chunk each is from."""

    def __init__(self, index: Any, owner: np.ndarray) -> None:
        self.index, self.owner = index, np.asarray(owner, dtype=np.int64)

    @classmethod
    def build(cls, chunks: Sequence[Chunk], embedder: Embedder, metric: str) -> SentenceIndex:
        import faiss

        texts, owner = sentence_texts(chunks)
        unique = list(dict.fromkeys(texts))  # overlapping chunks repeat sentences: embed each text once
        vectors = embedder.embed(unique)
        position = {t: i for i, t in enumerate(unique)}
        rows = VectorIndex._prepare(vectors[[position[t] for t in texts]], metric)
        index = faiss.IndexFlatL2(rows.shape[1]) if metric == "l2" else faiss.IndexFlatIP(rows.shape[1])
        index.add(rows)
        return cls(index, owner)

    def best(self, vectors: np.ndarray, n_chunks: int, metric: str) -> np.ndarray:
        """(queries, chunks): each chunk's best sentence similarity (cosine, or −L2 distance)."""
        scores, ids = self.index.search(vectors, int(self.index.ntotal))
        sims = -scores if metric == "l2" else scores
        out = np.full((len(vectors), n_chunks), -np.inf, dtype=np.float32)
        for row in range(len(vectors)):
            np.maximum.at(out[row], self.owner[ids[row]], sims[row])
        return out


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
    """Dense (FAISS: chunks and their sentences) and keyword (BM25) indexes over the same chunks, searched together and
    fused (`fusion`: "convex" with weight `alpha` on dense, or "rrf" with constant `rrf_k`)."""

    def __init__(self, dense: VectorIndex, keyword: KeywordIndex, sentences: SentenceIndex, mode: str = "hybrid",
                 fusion: str = "convex", alpha: float = ALPHA, rrf_k: int = RRF_K, candidates: int = CANDIDATES) -> None:
        if mode not in MODES:
            raise RagError(f"mode={mode!r}: use one of {MODES}.")
        if fusion not in FUSIONS:
            raise RagError(f"fusion={fusion!r}: use one of {FUSIONS}.")
        _check_alpha(alpha)
        self.dense, self.keyword, self.sentences, self.mode = dense, keyword, sentences, mode
        self.fusion, self.alpha, self.rrf_k, self.candidates = fusion, float(alpha), rrf_k, candidates
        self.upgraded_from: int | None = None  # set by `load` when the file came from an earlier version

    @classmethod
    def build(cls, chunks: list[Chunk], embedder: Embedder, metric: str = "cosine", **kwargs: Any) -> HybridIndex:
        """Embed and index the chunks (rag.VectorIndex.build) and their sentences, and BM25-index the same texts."""
        dense = VectorIndex.build(chunks, embedder, metric=metric)
        return cls(dense, KeywordIndex.build(chunks), SentenceIndex.build(chunks, embedder, metric), **kwargs)

    def using(self, mode: str | None = None, **settings: Any) -> HybridIndex:
        """The same index searched another way: mode "dense", "bm25" or "hybrid" (both, fused), and/or other fusion
        settings (`fusion`, `alpha`, `rrf_k`, `candidates`)."""
        now = {"mode": mode or self.mode, "fusion": self.fusion, "alpha": self.alpha, "rrf_k": self.rrf_k,
               "candidates": self.candidates}
        view = HybridIndex(self.dense, self.keyword, self.sentences, **{**now, **settings})
        view.upgraded_from = self.upgraded_from
        return view

    # what retrieval.evaluate and the prompts read, as on a VectorIndex
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

    def dense_scores(self, queries: list[str]) -> np.ndarray:
        """(queries, chunks): each chunk's similarity to the question plus its best sentence's (cosine, or −L2)."""
        vectors = self.embedder.embed(list(queries))  # once, for both FAISS indexes
        if vectors.shape[1] != self.dim:
            raise IndexMismatchError(f"The embedder returned {vectors.shape[1]}-dim vectors but the index holds "
                                     f"{self.dim}-dim ones. Search with the embedder that built the index, or rebuild it.")
        vectors = VectorIndex._prepare(vectors, self.metric)
        scores, ids = self.dense.index.search(vectors, len(self))
        chunk = np.empty_like(scores)
        np.put_along_axis(chunk, ids, -scores if self.metric == "l2" else scores, axis=1)
        return chunk + self.sentences.best(vectors, len(self), self.metric)

    def search_many(self, queries: list[str], k: int = 3) -> list[list[Hit]]:
        """`search` for several questions (embedded together: one request for the API embedder)."""
        check_queries(queries, k, len(self))
        depth = max(k, min(self.candidates, len(self)))
        if self.mode != "bm25":
            dense = self.dense_scores(queries)
            dense_ids = np.argsort(-dense, axis=1, kind="stable")[:, :depth]
            if self.mode == "dense":
                return [[Hit(r + 1, float(dense[q, j]), self.chunks[j]) for r, j in enumerate(row[:k])]
                        for q, row in enumerate(dense_ids)]
        ids, scores = self.keyword.rank(queries, depth if self.mode == "hybrid" else k)
        if self.mode == "bm25":
            return [[Hit(r + 1, float(s), self.chunks[int(i)]) for r, (i, s) in enumerate(zip(row_i, row_s, strict=True))]
                    for row_i, row_s in zip(ids, scores, strict=True)]
        out = []
        for q, (row_d, row_k, row_s) in enumerate(zip(dense_ids, ids, scores, strict=True)):
            if self.fusion == "rrf":
                fused = reciprocal_rank_fusion([row_d, row_k], self.rrf_k)
            else:
                fused = convex_fusion({int(j): float(dense[q, j]) for j in row_d},
                                      {int(j): float(s) for j, s in zip(row_k, row_s, strict=True)}, self.alpha)
            out.append([Hit(r + 1, s, self.chunks[j]) for r, (j, s) in enumerate(fused[:k])])
        return out

    # -- persistence: one file, the dense index's plus the BM25 part
    def save(self, path: str | os.PathLike) -> Path:
        """Write both indexes, the chunks, model id and dimension to one file, atomically (temp file, then rename)."""
        import faiss

        meta = {"format": HYBRID_FORMAT, "model_id": self.model_id, "dim": self.dim, "metric": self.metric,
                "count": len(self), "chunks": [asdict(c) for c in self.chunks],
                "bm25": {"library": "bm25s", "stopwords": STOPWORDS, "stemmer": STEMMER},
                "fusion": {"fusion": self.fusion, "alpha": self.alpha, "rrf_k": self.rrf_k}}
        arrays = {"index": np.asarray(faiss.serialize_index(self.dense.index), dtype=np.uint8),
                  "sentences/index": np.asarray(faiss.serialize_index(self.sentences.index), dtype=np.uint8),
                  "sentences/owner": self.sentences.owner, **self.keyword.to_arrays()}
        return write_npz(path, meta, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike, embedder: Embedder, **kwargs: Any) -> HybridIndex:
        """Read an index saved by `save`, or one from an earlier version: a dense-only file (format 1: its BM25 and
        sentence parts are rebuilt from its chunks) or a hybrid one without sentences (format 2: they are embedded
        again), in memory: the file is not touched. Fails clearly on another embedder or a damaged file. The fusion
        settings come from the file unless `kwargs` say otherwise."""
        import faiss

        path = Path(path)
        dense = VectorIndex.load(path, embedder)  # checks the file, the format, the model id and the dimension
        meta, arrays = read_npz(path)
        kwargs = {**{k: v for k, v in meta.get("fusion", {}).items() if k in ("fusion", "alpha", "rrf_k")}, **kwargs}
        if meta["format"] < HYBRID_FORMAT and "sentences/index" not in arrays:
            sentences = SentenceIndex.build(dense.chunks, embedder, dense.metric)
        else:
            try:
                sentences = SentenceIndex(faiss.deserialize_index(np.asarray(arrays["sentences/index"], dtype=np.uint8)),
                                          arrays["sentences/owner"])
                assert sentences.index.ntotal == len(sentences.owner) and sentences.index.d == dense.dim
            except Exception as exc:
                raise IndexFileError(f"{path}: its sentence part is missing or damaged ({type(exc).__name__}). Rebuild "
                                     "it with HybridIndex.build(chunks, embedder).save(path), which replaces the "
                                     "file.") from None
        if meta["format"] == 1:
            index = cls(dense, KeywordIndex.build(dense.chunks), sentences, **kwargs)
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
        index = cls(dense, keyword, sentences, **kwargs)
        index.upgraded_from = meta["format"] if meta["format"] < HYBRID_FORMAT else None
        return index


# ---------------------------------------------------------------- reranking (needs the model from the hub)
