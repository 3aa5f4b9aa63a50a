"""Retrieval-augmented generation, one interface for two embedders: the API's `mistral-embed` or a local model.

    document → chunks → Embedder (ApiEmbedder | LocalEmbedder) → VectorIndex (FAISS, saved with its model id
    and dimension) → search(question, k) → grounded_prompt(question, hits) → answer with citations

Notebook 05 embeds through the SDK (batched within mistral-embed's limits, cached on disk); notebook 08
embeds with sentence-transformers. Everything after the embedder is the same code.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
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


