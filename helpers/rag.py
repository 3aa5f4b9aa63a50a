"""Retrieval-augmented generation, one interface for two embedders: the API's `mistral-embed` or a local model.

    document → chunks → Embedder (ApiEmbedder | LocalEmbedder) → VectorIndex (FAISS, saved with its model id
    and dimension) → search(question, k) → grounded_prompt(question, hits) → answer with citations

Notebook 05 embeds through the SDK (batched within mistral-embed's limits, cached on disk); notebook 08
embeds with sentence-transformers. Everything after the embedder is the same code.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .chunking import (  # noqa: F401  (rag.chunk_sentences etc.: chunking is RAG's first step)
    Chunk,
    chunk_fixed,
    chunk_sections,
    chunk_sentences,
    split_sentences,
)
from .embeddings import (  # noqa: F401  (rag.ApiEmbedder etc.: notebooks 04 and 07 meet them as part of RAG)
    EMBED_MAX_INPUTS,
    EMBED_MAX_TOKENS,
    ApiEmbedder,
    Embedder,
    EmbeddingCache,
    LocalEmbedder,
    RagError,
    count_tokens,
    plan_batches,
)
from .indexfile import read_npz, remove_orphan_temps, write_npz  # noqa: F401  (rag._remove_orphan_temps: older name)
from .settings import data_path

_remove_orphan_temps = remove_orphan_temps

INDEX_FORMAT = 1
READABLE_FORMATS = (1, 2, 3)
METRICS = ("l2", "cosine")
DEFAULT_DOCUMENT = "handbook.md"
DEFAULT_EVAL_SET = "handbook_eval.json"


class IndexMismatchError(RagError):
    """An index was loaded with an embedder other than the one that built it."""


class IndexFileError(RagError):
    """A file that is not a course index, or one that is damaged; rebuild the index to replace it."""


# ---------------------------------------------------------------- the index
def check_queries(queries: list[str], k: int, size: int) -> None:
    """One check for every index's search: non-blank questions and 1 ≤ k ≤ the chunks it holds."""
    if not queries or any(not isinstance(q, str) or not q.strip() for q in queries):
        raise RagError("The question is empty: ask something (a non-blank string) to search for.")
    if not 1 <= k <= size:
        raise RagError(f"k={k} but the index holds {size} chunks: use 1 ≤ k ≤ {size}.")


@dataclass(frozen=True)
class Hit:
    """One search result: the chunk, its rank (1 = best) and score (L2 distance, or cosine similarity)."""

    rank: int
    score: float
    chunk: Chunk


class VectorIndex:
    """A FAISS index plus the chunks it holds and the embedder that built it (`l2` as in the seed, or `cosine`)."""

    def __init__(self, embedder: Embedder, chunks: list[Chunk], index: Any, metric: str) -> None:
        self.embedder = embedder
        self.chunks = chunks
        self.index = index
        self.metric = metric

    # -- building
    @classmethod
    def build(cls, chunks: list[Chunk], embedder: Embedder, metric: str = "l2") -> VectorIndex:
        """Embed the chunks (in batches) and index them: `l2` = IndexFlatL2; `cosine` = IndexFlatIP on unit vectors."""
        import faiss

        if metric not in METRICS:
            raise RagError(f"metric={metric!r}: use one of {METRICS}.")
        if not chunks:
            raise RagError("No chunks to index: the document was empty or chunking produced nothing.")
        vectors = embedder.embed([c.search_text for c in chunks])
        index = faiss.IndexFlatL2(vectors.shape[1]) if metric == "l2" else faiss.IndexFlatIP(vectors.shape[1])
        index.add(cls._prepare(vectors, metric))
        return cls(embedder, list(chunks), index, metric)

    @staticmethod
    def _prepare(vectors: np.ndarray, metric: str) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if metric == "cosine":
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)
        return vectors

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def __len__(self) -> int:
        return int(self.index.ntotal)

    # -- searching
    def search(self, query: str, k: int = 3) -> list[Hit]:
        """The k chunks closest to the question, best first."""
        return self.search_many([query], k)[0]

    def search_many(self, queries: list[str], k: int = 3) -> list[list[Hit]]:
        """`search` for several questions, embedding them together (one request for the API embedder)."""
        check_queries(queries, k, len(self))
        vectors = self.embedder.embed(list(queries))
        if vectors.shape[1] != self.dim:
            raise IndexMismatchError(
                f"The embedder returned {vectors.shape[1]}-dim vectors but the index holds {self.dim}-dim ones. "
                "Search with the embedder that built the index, or rebuild it."
            )
        scores, ids = self.index.search(self._prepare(vectors, self.metric), k)
        return [
            [Hit(rank + 1, float(s), self.chunks[int(i)]) for rank, (s, i) in enumerate(zip(row_s, row_i, strict=True)) if i >= 0]
            for row_s, row_i in zip(scores, ids, strict=True)
        ]

    # -- persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write index + chunks + model id + dimension to one file, atomically (temp file, then rename)."""
        import faiss

        meta = {"format": INDEX_FORMAT, "model_id": self.model_id, "dim": self.dim, "metric": self.metric,
                "count": len(self), "chunks": [asdict(c) for c in self.chunks]}
        return write_npz(path, meta, {"index": np.asarray(faiss.serialize_index(self.index), dtype=np.uint8)})

    @classmethod
    def load(cls, path: str | os.PathLike, embedder: Embedder) -> VectorIndex:
        """Read an index saved by `save`; fails clearly if `embedder` is not the one that built it."""
        import faiss

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"No index at {path}: build one with VectorIndex.build(...).save(path).")

        def unreadable(why: str) -> IndexFileError:
            return IndexFileError(
                f"{path} is not a course index or is corrupt ({why}). Rebuild it with "
                "VectorIndex.build(chunks, embedder).save(path) (which replaces the file), or pass the path of "
                "an index saved by VectorIndex.save."
            )

        try:
            meta, arrays = read_npz(path)
            raw = np.asarray(arrays["index"], dtype=np.uint8)
        except Exception as exc:  # not a zip, a zip without our arrays, truncated, bad JSON…
            raise unreadable(f"{type(exc).__name__}: {exc}") from None
        if not isinstance(meta, dict) or not {"format", "model_id", "dim", "metric", "chunks"} <= meta.keys():
            raise unreadable("its metadata lacks the format, model id, dimension, metric or chunks")
        if meta.get("format") not in READABLE_FORMATS:  # 2, 3 = hybrid indexes (helpers.hybrid): the dense part is read
            raise RagError(f"{path} has index format {meta.get('format')}, this course reads {READABLE_FORMATS}: "
                           "rebuild it (the file is left as it is).")
        if meta["model_id"] != embedder.model_id:
            raise IndexMismatchError(
                f"The index at {path} was built with {meta['model_id']!r} ({meta['dim']} dims) but you passed an "
                f"embedder for {embedder.model_id!r}. Vectors from different models are not comparable: load it "
                "with the embedder that built it, or rebuild the index with this one."
            )
        if meta["dim"] != embedder.dim:
            raise IndexMismatchError(
                f"The index at {path} holds {meta['dim']}-dim vectors but the embedder makes {embedder.dim}-dim ones. "
                "Rebuild the index with this embedder."
            )
        try:
            index = faiss.deserialize_index(raw)
            chunks = [Chunk(**c) for c in meta["chunks"]]
        except Exception as exc:
            raise unreadable(f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}") \
                from None
        if index.ntotal != len(chunks) or index.d != meta["dim"]:
            raise unreadable(f"the FAISS index holds {index.ntotal} vectors of {index.d} dims for {len(chunks)} chunks")
        return cls(embedder, chunks, index, meta["metric"])


# ---------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class EvalItem:
    """A question and the passage of the document that answers it (offsets make relevance checkable for any chunking)."""

    id: str
    question: str
    answer: str
    start: int
    end: int
    key: tuple[str, ...] = ()  # the fact a right answer states ("120 days"); any one of these phrasings will do
    reject: tuple[str, ...] = ()  # phrases that make an answer wrong even when it states the key ("not free")

    def rejects(self, answer: Any) -> list[str]:
        """`reject` plus every other amount the answer states, when the key is an amount: '15 euros per day, 20 euros
        per month' hedges between two fees, so it is wrong even though it names the right one."""
        from .tools import content_text

        answer = getattr(answer, "choices", [answer])[0]  # a string, or an SDK response / choice / message
        answer = getattr(answer, "message", answer)
        answer = content_text(answer if isinstance(answer, str) else getattr(answer, "content", answer))
        right = {_amount(k) for k in self.key} - {None}
        if not right:
            return list(self.reject)
        asked = {_amount(m.group(0)) for m in _AMOUNTS.finditer(self.question)}
        others = [m.group(0).strip() for m in _AMOUNTS.finditer(answer) if _amount(m.group(0)) not in right | asked]
        return [*self.reject, *dict.fromkeys(others)]


# an amount of money or a percentage as the handbook writes them: '4 euros', '€15,000', '2.1%', '2.1 percent'
_AMOUNTS = re.compile(r"€\s?\d[\d,]*(?:\.\d+)?|\d[\d,]*(?:\.\d+)?\s?(?:euros?\b|EUR\b|%|percent\b|per cent\b)", re.I)


def _amount(text: str) -> tuple[str, float] | None:
    """('money' | 'percent', value) of an amount, or None when the text holds none."""
    found = _AMOUNTS.search(text)
    if found is None:
        return None
    value = float(re.sub(r"[^\d.]", "", found.group(0).replace(",", "")))
    return ("percent" if re.search(r"%|per ?cent", found.group(0), re.I) else "money"), value


def is_relevant(chunk: Chunk, item: EvalItem, min_fraction: float = 0.5) -> bool:
    """True when the chunk holds at least `min_fraction` of the passage that answers the question."""
    overlap = min(chunk.end, item.end) - max(chunk.start, item.start)
    return overlap >= min_fraction * (item.end - item.start)


def first_relevant_rank(hits: Iterable[Hit], item: EvalItem) -> int | None:
    """Rank (1-based) of the first hit that contains the answer passage, or None."""
    for hit in hits:
        if is_relevant(hit.chunk, item):
            return hit.rank
    return None


def retrieval_metrics(ranks: Sequence[int | None], ks: Sequence[int] = (1, 3, 5)) -> dict[str, float]:
    """hit_rate_at_k (share of questions answered in the top k) and MRR (mean of 1/rank; 0 when not found)."""
    if not ranks:
        raise RagError("No questions to evaluate: the eval set is empty.")
    _check_ks(ks)
    n = len(ranks)
    out = {f"hit_rate_at_{k}": sum(1 for r in ranks if r is not None and r <= k) / n for k in ks}
    out["mrr"] = sum(1.0 / r for r in ranks if r is not None) / n
    return out


def _check_ks(ks: Sequence[int]) -> None:
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence) or not ks or \
            not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in ks):
        raise RagError(f"ks={ks!r}: give the cut-offs as a non-empty sequence of positive integers, e.g. ks=(1, 3, 5).")


def evaluate(index: VectorIndex, eval_set: Sequence[EvalItem], ks: Sequence[int] = (1, 3, 5),
             depth: int = 10) -> dict[str, Any]:
    """Retrieval quality on an eval set: hit_rate_at_1/3/5, MRR (over the top `depth`), and each question's rank."""
    if not eval_set:
        raise RagError("The eval set is empty: there are no questions to evaluate. Load one with "
                       "helpers.rag.load_eval_set() or pass a non-empty list of EvalItem.")
    _check_ks(ks)
    depth = min(max(depth, *ks), len(index))
    results = index.search_many([item.question for item in eval_set], k=depth)
    ranks = [first_relevant_rank(hits, item) for hits, item in zip(results, eval_set, strict=True)]
    metrics: dict[str, Any] = retrieval_metrics(ranks, ks)
    metrics["n_questions"] = len(eval_set)
    metrics["ranks"] = {item.id: r for item, r in zip(eval_set, ranks, strict=True)}
    return metrics


# ---------------------------------------------------------------- prompting
def grounded_prompt(question: str, hits: Sequence[Hit]) -> str:
    """A prompt that answers only from the retrieved chunks, cites their ids, and admits when they lack the answer."""
    if not question or not question.strip():
        raise RagError("The question is empty: ask something.")
    context = "\n\n".join(f"[{h.chunk.id}] {h.chunk.text.strip()}" for h in hits)
    return (
        "Answer the question using only the context below. After each fact, cite the id of the chunk it "
        "comes from in square brackets, e.g. [c012]. If the context does not contain the answer, reply "
        "exactly: \"I don't know — the documents provided don't say.\" Do not use outside knowledge.\n\n"
        f"Context:\n{context}\n\nQuestion: {question.strip()}\nAnswer:"
    )


def cited_ids(answer: str) -> list[str]:
    """The chunk ids an answer cites, e.g. ['c003', 'c010'] from '... [c003] ... [c010]'."""
    return re.findall(r"\[(c\d{3,})\]", answer or "")


# ---------------------------------------------------------------- shipped data
def load_document(name: str = DEFAULT_DOCUMENT) -> str:
    """The course's RAG document (data/handbook.md: a fictional bank's customer handbook, written for the course)."""
    return data_path(name).read_text(encoding="utf-8")


def load_eval_set(name: str = DEFAULT_EVAL_SET, document: str | None = None) -> list[EvalItem]:
    """The eval questions, each located in the document (its answer passage must occur there exactly once)."""
    raw = json.loads(data_path(name).read_text(encoding="utf-8"))
    text = document if document is not None else load_document(raw.get("document", DEFAULT_DOCUMENT))
    items = []
    for q in raw["questions"]:
        start = text.find(q["answer"])
        if start < 0 or text.find(q["answer"], start + 1) >= 0:
            where = "not found" if start < 0 else "found more than once"
            raise RagError(f"Eval item {q['id']}: its answer passage is {where} in the document; fix {name}.")
        key = q.get("key", ())
        items.append(EvalItem(q["id"], q["question"], q["answer"], start, start + len(q["answer"]),
                              tuple([key] if isinstance(key, str) else key), tuple(q.get("reject", ()))))
    return items

