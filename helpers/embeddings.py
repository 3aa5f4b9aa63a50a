"""Embedders for RAG (notebooks 04, 07 and the endpoint): the API's `mistral-embed` or a local sentence-transformers model.

`ApiEmbedder` packs texts into as few `client.embeddings.create` requests as mistral-embed's limits allow, retries
with the client's own RetryConfig, embeds each distinct text once and keeps every vector in an SQLite cache keyed by
(model id, text), so a rerun pays nothing. `LocalEmbedder` wraps `SentenceTransformer.encode`. Both give unit-length
float32 vectors and a `model_id` that an index is saved with.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .load_errors import ModelLoadError, _load_error_kind
from .paths import minilm_path, quiet_progress
from .settings import DEFAULT_LOCAL_EMBED_MODEL, cache_dir, resolve_device, unattended

# mistral-embed's per-request limits, as reported by users in the mistralai SDK's issue tracker (seen 2026-11-25);
# Mistral does not document them, so a 400 from the API saying otherwise wins.
EMBED_MAX_INPUTS = 512
EMBED_MAX_TOKENS = 16_384
EMBED_MAX_TOKENS_PER_INPUT = 8_192


class RagError(ValueError):
    """Bad input to a RAG step (empty document or question, k too large); the message says what to do."""


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into float32 vectors: `.model_id`, `.dim`, `.embed(texts)`."""

    model_id: str

    @property
    def dim(self) -> int: ...

    def embed(self, texts: list[str]) -> np.ndarray: ...


_tokenizer_lock = threading.Lock()
_tokenizer: Any = None


def count_tokens(text: str) -> int:
    """Tokens in `text` by a real Mistral tokenizer (v3 SentencePiece from mistral-common), counting the BOS."""
    global _tokenizer
    with _tokenizer_lock:
        if _tokenizer is None:
            from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

            from .paths import tokenizer_source

            _tokenizer = MistralTokenizer.from_file(str(tokenizer_source())).instruct_tokenizer.tokenizer
    return len(_tokenizer.encode(text, bos=True, eos=False))


def plan_batches(
    token_counts: Sequence[int],
    max_inputs: int = EMBED_MAX_INPUTS,
    max_tokens: int = EMBED_MAX_TOKENS,
) -> list[list[int]]:
    """Group input positions into requests: each at most `max_inputs` inputs and `max_tokens` tokens, in order."""
    if max_inputs < 1 or max_tokens < 1:
        raise RagError("max_inputs and max_tokens must be at least 1.")
    batches: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i, n in enumerate(token_counts):
        if n > max_tokens:
            raise RagError(
                f"Input {i} has {n} tokens, more than one request may carry ({max_tokens}). "
                "Use smaller chunks (e.g. chunk_sentences(text, max_chars=1000))."
            )
        if current and (len(current) >= max_inputs or used + n > max_tokens):
            batches.append(current)
            current, used = [], 0
        current.append(i)
        used += n
    if current:
        batches.append(current)
    return batches


class EmbeddingCache:
    """Vectors on disk keyed by (model id, text), in one SQLite file, so a rerun pays for nothing."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # timeout: another process (a second test worker, a notebook beside a test) may hold the write lock a moment
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, dim INTEGER, vec BLOB)")
        self._db.commit()

    @staticmethod
    def key(model_id: str, text: str) -> str:
        return hashlib.sha256(f"{model_id}\x00{text}".encode()).hexdigest()

    def get_many(self, model_id: str, texts: Sequence[str]) -> dict[int, np.ndarray]:
        """Cached vectors by position in `texts` (positions with no cached vector are absent)."""
        found: dict[int, np.ndarray] = {}
        for i, text in enumerate(texts):
            row = self._db.execute("SELECT vec FROM vectors WHERE key = ?", (self.key(model_id, text),)).fetchone()
            if row is not None:
                found[i] = np.frombuffer(row[0], dtype=np.float32).copy()
        return found

    def put_many(self, model_id: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        rows = [(self.key(model_id, t), int(v.shape[0]), np.asarray(v, np.float32).tobytes())
                for t, v in zip(texts, vectors, strict=True)]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", rows)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        self._db.close()


OFFICIAL_HOSTS = ("api.mistral.ai",)


def _server_url(client: Any) -> str:
    cfg = getattr(client, "sdk_configuration", None)
    try:
        url, _ = cfg.get_server_details()  # type: ignore[union-attr]
        return str(url)
    except Exception:
        return str(getattr(cfg, "server_url", "") or "")


def served_by_for_url(url: str) -> str:
    """What serves the vectors behind a non-official server URL, for cache keys: the URL itself.

    A pure function of the setting, on purpose: no /health probe and no lookup, so the same settings always
    give the same key (a probe that failed once used to rename the embedder and re-embed everything).
    The course's own endpoint is named by its embedding model instead (see `ApiEmbedder.for_settings`).
    """
    return url.rstrip("/")


class ApiEmbedder:
    """Embeddings through the SDK (`client.embeddings.create`), batched within mistral-embed's limits and cached.

    `served_by` names what really computes the vectors when the client points at a non-official server
    (offline: all-MiniLM-L6-v2 behind the alias `mistral-embed`). It is part of `model_id`, so an index
    or a cache entry built on one backend is never mistaken for the other's. `for_settings` derives it from
    the course settings alone (the course's endpoint: its embedding model, so a restart on another port still
    hits the cache); given only a client, it is the server's URL. Identical texts in one call are sent once.
    """

    def __init__(
        self,
        client: Any,
        model: str = "mistral-embed",
        *,
        served_by: str | None = None,
        cache: EmbeddingCache | str | os.PathLike | None = "default",
        max_inputs: int = EMBED_MAX_INPUTS,
        max_tokens: int = EMBED_MAX_TOKENS,
        retries: Any = None,
        progress: bool | None = None,
        token_counter: Callable[[str], int] = count_tokens,
    ) -> None:
        self.client = client
        self.model = model
        url = _server_url(client)
        if served_by is None and url and not any(h in url for h in OFFICIAL_HOSTS):
            served_by = served_by_for_url(url)
        self.served_by = served_by
        self.model_id = model if not served_by else f"{model}@{served_by}"
        if cache == "default":
            cache = cache_dir() / "embeddings.sqlite"
        self.cache = EmbeddingCache(cache) if isinstance(cache, (str, os.PathLike)) else cache
        self.max_inputs = max_inputs
        self.max_tokens = max_tokens
        if retries is None:  # the client's own RetryConfig (helpers.client.get_client sets one)
            retries = getattr(getattr(client, "sdk_configuration", None), "retry_config", None)
        self.retries = retries  # the SDK's RetryConfig: back-off on 429 and 5xx
        # a bar for someone watching; None: none in unattended runs (papermill, CI), whose saved notebooks would keep
        # the bar's first frame ("0%") and never its last
        self.progress = (not unattended()) if progress is None else bool(progress)
        self.token_counter = token_counter
        self._dim: int | None = None
        self.reset_stats()

    @classmethod
    def for_settings(cls, client: Any, settings: Any, **kwargs: Any) -> ApiEmbedder:
        """The embedder for a resolved course backend: on `local`, name what really serves `mistral-embed`."""
        if settings.backend == "mistral":
            served_by = None
        else:  # an external endpoint given by LOCAL_URL, or the course's own serving local_embed_model
            served_by = served_by_for_url(settings.local_url) if settings.local_url else settings.local_embed_model
        return cls(client, settings.embed_model, served_by=served_by, **kwargs)

    def reset_stats(self) -> None:
        """Zero the counters (requests, inputs sent, cache hits, tokens billed)."""
        self.requests = 0
        self.inputs_sent = 0
        self.cache_hits = 0
        self.tokens_billed = 0
        self.batch_sizes: list[int] = []

    @property
    def stats(self) -> dict[str, int]:
        """What embedding has cost so far: requests, inputs sent, cache hits, tokens billed."""
        return {"requests": self.requests, "inputs_sent": self.inputs_sent,
                "cache_hits": self.cache_hits, "tokens_billed": self.tokens_billed}

    @property
    def dim(self) -> int:
        """Vector size; known after the first embed (probes the server once if asked earlier)."""
        if self._dim is None:
            self.embed(["dimension probe"])
        assert self._dim is not None
        return self._dim

    def embed(self, texts: list[str]) -> np.ndarray:
        """Vectors for `texts` (float32, one row each): cached ones from disk, the rest in as few requests as allowed."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self._dim or 0), np.float32)
        if any(not isinstance(t, str) or not t.strip() for t in texts):
            raise RagError("Cannot embed an empty text (the API rejects it). Drop empty chunks or questions first.")
        found = self.cache.get_many(self.model_id, texts) if self.cache is not None else {}
        self.cache_hits += len(found)
        first: dict[str, int] = {}  # text → its first position: a text repeated in one call is embedded once
        missing = [first.setdefault(texts[i], i) for i in range(len(texts)) if i not in found and texts[i] not in first]
        if missing:
            from tqdm.auto import tqdm

            counts = [self.token_counter(texts[i]) for i in missing]
            for i, n in zip(missing, counts, strict=True):
                if n > EMBED_MAX_TOKENS_PER_INPUT:
                    raise RagError(f"Text {i} has {n} tokens; mistral-embed takes about "
                                   f"{EMBED_MAX_TOKENS_PER_INPUT} per input. Use smaller chunks.")
            batches = plan_batches(counts, self.max_inputs, self.max_tokens)
            bar = tqdm(total=len(missing), desc=f"embedding ({self.model})", unit="text",
                       disable=not self.progress, leave=False)
            try:
                for batch in batches:
                    positions = [missing[b] for b in batch]
                    batch_texts = [texts[p] for p in positions]
                    vectors = self._request(batch_texts)
                    for p, v in zip(positions, vectors, strict=True):
                        found[p] = v
                    if self.cache is not None:
                        self.cache.put_many(self.model_id, batch_texts, vectors)
                    bar.update(len(batch))
            finally:
                bar.close()
        out = np.stack([found[i] if i in found else found[first[texts[i]]] for i in range(len(texts))]).astype(np.float32)
        self._dim = int(out.shape[1])
        return out

    def _request(self, texts: list[str]) -> np.ndarray:
        response = self.client.embeddings.create(model=self.model, inputs=texts, retries=self.retries)
        self.requests += 1
        self.inputs_sent += len(texts)
        self.batch_sizes.append(len(texts))
        usage = getattr(response, "usage", None)
        self.tokens_billed += int(getattr(usage, "prompt_tokens", 0) or 0)
        data = sorted(response.data, key=lambda d: d.index if d.index is not None else 0)
        if len(data) != len(texts):
            raise RuntimeError(f"The server returned {len(data)} embeddings for {len(texts)} inputs.")
        return np.asarray([d.embedding for d in data], dtype=np.float32)


class LocalEmbedder:
    """Embeddings computed in this process by a sentence-transformers model (all-MiniLM-L6-v2 by default)."""

    def __init__(self, model_id: str = DEFAULT_LOCAL_EMBED_MODEL, device: str = "auto", batch_size: int = 64) -> None:

        self.model_id = model_id
        self.model = load_embedder(model_id, device=device)
        self.batch_size = batch_size
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self._dim = int(get_dim())

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: list[str]) -> np.ndarray:
        """Vectors for `texts` (float32, one row each), computed locally in batches."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self._dim), np.float32)
        if any(not isinstance(t, str) or not t.strip() for t in texts):
            raise RagError("Cannot embed an empty text. Drop empty chunks or questions first.")
        vectors = self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                    show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


# ---------------------------------------------------------------- loading a sentence-transformers model
def embedder_path(model_id: str = DEFAULT_LOCAL_EMBED_MODEL) -> str:
    """The packaged offline copy for all-MiniLM-L6-v2 (same weights as the hub's), else the id unchanged."""
    if model_id in (DEFAULT_LOCAL_EMBED_MODEL, "all-MiniLM-L6-v2"):
        return str(minilm_path())
    return model_id


def explain_embedder_error(exc: BaseException, model_id: str) -> ModelLoadError:
    """Turn a sentence-transformers loading error into one that names LOCAL_EMBED_MODEL and what to set it to."""
    fallback = (f"Set LOCAL_EMBED_MODEL='{DEFAULT_LOCAL_EMBED_MODEL}' (the default: loads from its packaged copy, "
                "no hub needed) or to a local folder holding a sentence-transformers model.")
    kind = _load_error_kind(exc)
    if kind == "other" and isinstance(exc, FileNotFoundError) and not Path(model_id).exists():
        kind = "missing"  # sentence-transformers' "Path ... not found" for a folder that isn't there
    if kind == "gated":
        why = (f"it is gated on the Hugging Face hub: accept its licence at https://huggingface.co/{model_id} "
               "and set HF_TOKEN, or use another model")
    elif kind == "offline":
        why = "the Hugging Face hub is unreachable (offline, or HF_HUB_OFFLINE=1) and it is not in the local cache"
    elif kind == "missing":
        why = "it is neither a local folder nor a model on the hub (check the spelling)"
    else:
        why = f"{type(exc).__name__}: {str(exc).rstrip('.')}"
    return ModelLoadError(f"Cannot load the embedding model {model_id!r}: {why}. {fallback}")


def load_embedder(model_id: str = DEFAULT_LOCAL_EMBED_MODEL, device: str = "auto"):
    """A sentence-transformers model (all-MiniLM-L6-v2 comes from its offline package); errors say what to set."""
    from sentence_transformers import SentenceTransformer

    path = embedder_path(model_id)
    try:
        with quiet_progress():
            model = SentenceTransformer(path, device=resolve_device(device))
    except (OSError, ValueError) as exc:  # hub errors are OSErrors; a folder that isn't a model is a ValueError
        raise explain_embedder_error(exc, model_id) from exc
    _on_gpu_ledger(model, model_id, device)
    return model


def _on_gpu_ledger(model, model_id: str, device: str) -> None:
    """Count the embedder on the GPU's books (helpers.budget) for as long as it lives; refuse if it cannot fit."""
    from . import hooks
    from .device import Ask

    book = hooks.ledger(device if hooks.placement(device) else resolve_device(device))
    if book is not None:  # on a GPU sentence-transformers keeps its weights as loaded: fp32 for MiniLM
        size = sum(p.numel() * p.element_size() for p in model.parameters())
        book.hold(model, book.admit(Ask(f"embedder {model_id.split('/')[-1]}", "embeddings", size, 0)))
