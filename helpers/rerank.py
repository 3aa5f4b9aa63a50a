"""Reranking: a cross-encoder reads the question and each retrieved chunk together and re-scores them (05).

Slower than the first retrieval, so it re-orders only its top hits. The model comes from the Hugging Face hub (no
package ships one for offline use): `reranker_for("auto")` tries once, briefly, and skips with the reason when it
cannot be had, so a notebook never stops on a hub outage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .rag import Hit

RERANK_MODEL = "cross-encoder/ms-marco-MiniLM-L6-v2"  # sentence-transformers' retrieve & re-rank docs use this one


def reranker_available(model_id: str = RERANK_MODEL, timeout_s: float = 3.0) -> tuple[bool, str]:
    """Whether `load_reranker` can work here, and why: the model is in the Hugging Face cache, or the hub answers one
    brief question about it within `timeout_s` (offline, a hub outage or a stalled connection: False, at once)."""
    from huggingface_hub import model_info, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(model_id, "config.json"), str):
        return True, f"{model_id} is in the Hugging Face cache"
    try:  # offline mode, no network, a timeout, the hub down (5xx): all mean "not now"
        model_info(model_id, timeout=timeout_s)
    except Exception as exc:
        return False, (f"{model_id} is not in the Hugging Face cache and the hub did not answer within {timeout_s:g} s "
                       f"({type(exc).__name__}); no package on PyPI ships a cross-encoder for offline use")
    return True, f"the Hugging Face hub serves {model_id}"


def load_reranker(model_id: str = RERANK_MODEL, device: str = "cpu") -> Any:
    """A sentence-transformers CrossEncoder; offline (no hub, not cached) it raises RerankUnavailable, saying so."""
    from sentence_transformers import CrossEncoder

    try:
        return CrossEncoder(model_id, device=device)
    except (OSError, ValueError) as exc:  # the hub's errors are OSErrors
        raise RerankUnavailable(
            f"Cannot load the cross-encoder {model_id!r} ({type(exc).__name__}): it comes from the Hugging Face hub "
            "and no package ships one for offline use. Run where the hub is reachable (e.g. Colab) to rerank, or set "
            "RERANK='auto' to skip it when it cannot be had; retrieval works without it.") from exc


def reranker_for(asked: Any, model_id: str = RERANK_MODEL, device: str = "cpu") -> tuple[Any | None, str]:
    """(cross-encoder or None, one-line status) for RERANK: False skips; "auto" tries once, briefly, and skips with the
    reason when the model cannot be had (offline, hub down); True loads it or raises RerankUnavailable."""
    if asked is False:
        return None, "skipped: RERANK=False"
    if asked == "auto":
        ok, why = reranker_available(model_id)
        if not ok:
            return None, f"skipped: {why}"
        try:  # the hub answered; a download that then fails is still no reason to stop
            return load_reranker(model_id, device), f"loaded: {why}"
        except RerankUnavailable as exc:
            return None, f"skipped: {str(exc).split(': it comes from')[0]}"
    return load_reranker(model_id, device), f"loaded {model_id} (RERANK=True)"


class RerankUnavailable(RuntimeError):
    """No cross-encoder could be loaded (offline, no cached copy)."""


def rerank(model: Any, query: str, hits: Sequence[Hit], k: int | None = None) -> list[Hit]:
    """Re-order retrieved hits by a cross-encoder's relevance score for (query, chunk); score = that relevance."""
    if not hits:
        return []
    ranked = model.rank(query, [h.chunk.search_text for h in hits], top_k=k or len(hits))
    return [replace(hits[r["corpus_id"]], rank=i + 1, score=float(r["score"])) for i, r in enumerate(ranked)]
