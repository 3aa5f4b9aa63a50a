"""Measuring retrieval (notebooks 05, 08, 10): the eval set, what counts as a relevant chunk, hit rate at k and MRR.

Hit rate at k: the share of questions whose first relevant chunk is among the top k. MRR (mean reciprocal rank): the
mean of 1/rank of that chunk (0 when it is not retrieved). `choose_alpha` picks the hybrid fusion weight on a dev set.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ...chunking import Chunk
from ...hybrid import HybridIndex
from ...paths import data_path
from ...rag import DEFAULT_DOCUMENT, Hit, RagError, VectorIndex, load_document

# an amount of money or a percentage as the handbook writes them: '4 euros', '€15,000', '2.1%', '2.1 percent'
_AMOUNTS = re.compile(r"€\s?\d[\d,]*(?:\.\d+)?|\d[\d,]*(?:\.\d+)?\s?(?:euros?\b|EUR\b|%|percent\b|per cent\b)", re.I)
DEFAULT_EVAL_SET = "handbook_eval.json"
ALPHA_GRID = (0.5, 0.6, 0.7, 0.8, 0.9)  # the weights `choose_alpha` tries on a dev set: dense at least as strong as BM25

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
        from ...tools import content_text

        answer = getattr(answer, "choices", [answer])[0]  # a string, or an SDK response / choice / message
        answer = getattr(answer, "message", answer)
        answer = content_text(answer if isinstance(answer, str) else getattr(answer, "content", answer))
        right = {_amount(k) for k in self.key} - {None}
        if not right:
            return list(self.reject)
        asked = {_amount(m.group(0)) for m in _AMOUNTS.finditer(self.question)}
        others = [m.group(0).strip() for m in _AMOUNTS.finditer(answer) if _amount(m.group(0)) not in right | asked]
        return [*self.reject, *dict.fromkeys(others)]


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


def choose_alpha(index: HybridIndex, dev_set: Sequence[Any], grid: Sequence[float] = ALPHA_GRID) -> tuple[float, dict]:
    """The fusion weight for `index`, chosen on a development set — never on the set you report: the alpha in `grid`
    with the best MRR there (ties: the higher hit rate @1, then the smaller alpha). Returns it and every alpha's
    metrics, so the choice can be shown."""

    tried = {float(a): evaluate(index.using("hybrid", fusion="convex", alpha=float(a)), dev_set, ks=(1, 3, 5))
             for a in grid}
    best = max(tried, key=lambda a: (round(tried[a]["mrr"], 9), round(tried[a]["hit_rate_at_1"], 9), -a))
    return best, tried
