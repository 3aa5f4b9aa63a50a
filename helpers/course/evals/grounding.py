"""Judging cited answers (notebooks 05 and 08): do the sources come from what was retrieved, does the answer hold the
eval question's key fact, and does the model abstain on questions the documents do not answer.

How to ask for cited answers (`citation_schema`, `cited_prompt`, `parse_cited`) is the lesson, in `helpers.citations`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ...paths import data_path
from ...rag import Hit, RagError, cited_ids
from .retrieval import EvalItem, is_relevant

UNANSWERABLE_SET = "handbook_unanswerable.json"

def repeated_ids(cited: Sequence[str]) -> list[str]:
    """The ids a reply cites more than once (`uniqueItems` asks for none; a decoder may not enforce it)."""
    return [i for i in dict.fromkeys(cited) if list(cited).count(i) > 1]


@dataclass
class Checked:
    """One grounded answer and what was checked about it: its citations, and whether it states the key fact."""

    question: str
    style: str  # how the answer cites: "free text" / "prompt-only [c012]" (ids in its text) or "json_schema"
    answer: str
    cited: list[str]
    retrieved: list[str]
    answer_chunks: list[str]  # the retrieved chunks that hold the answer passage
    verdict: str = ""  # right / wrong / cut / unchecked, from helpers.course.verdicts
    extra: dict[str, Any] = field(default_factory=dict)
    repeated: list[str] = field(default_factory=list)  # ids the reply cited more than once (`cited` holds each once)
    answerable: bool | None = None  # the JSON answer's flag; None for prompt-only answers
    why: str = ""  # the verdict's reason in words, when check was given a Verdict

    @property
    def cites_retrieved(self) -> bool:
        return bool(set(self.cited) & set(self.retrieved))

    @property
    def invents_no_source(self) -> bool:
        """Every id it cites was retrieved (true of an answer that cites none): what the schema's `enum` guarantees."""
        return set(self.cited) <= set(self.retrieved)

    @property
    def cites_answer_chunk(self) -> bool:
        return bool(set(self.cited) & set(self.answer_chunks))

    def row(self) -> dict[str, Any]:
        return {"style": self.style, "question": self.question, "retrieved": self.retrieved, "cited": self.cited,
                "cites a retrieved chunk": self.cites_retrieved, "cites the answer's chunk": self.cites_answer_chunk,
                "repeated ids": self.repeated, "verdict": f"{self.verdict}: {self.why}" if self.why else self.verdict,
                "answer": self.answer}


def check(question: EvalItem, hits: Sequence[Hit], style: str, answer: str, cited: Sequence[str],
          verdict: Any = "", answerable: bool | None = None) -> Checked:
    """Record an answer with the ids it cites (each once; repeats flagged in `repeated`), the ids retrieved, and which
    retrieved chunks hold the answer; `verdict` is a kind ('right') or a Verdict, whose reason the row then shows."""
    why, verdict = getattr(verdict, "why", ""), getattr(verdict, "kind", verdict)
    return Checked(question.question, style, answer, list(dict.fromkeys(cited)), [h.chunk.id for h in hits],
                   [h.chunk.id for h in hits if is_relevant(h.chunk, question)], verdict,
                   repeated=repeated_ids(cited), answerable=answerable, why=why)


def prompt_only_citations(answer: str) -> list[str]:
    """The `[c012]` ids a free-text answer cites (rag.cited_ids)."""
    return cited_ids(answer)


def shares(rows: Sequence[Checked]) -> dict[str, float | int]:
    """answers_citing_retrieved_chunk, answers_with_no_invented_source, answers_citing_answer_chunk, answers_right
    and answers_repeating_an_id (the replies that cited an id more than once, before `check` kept each once) as shares
    of `rows`; answers_checked (how many); and answers_saying_unanswerable (the share flagged `answerable: false`: on questions the
    documents do answer, each one is an abstention too many)."""
    if not rows:
        raise RagError("No answers to summarise.")
    n = len(rows)
    return {"answers_checked": n,
            "answers_citing_retrieved_chunk": round(sum(r.cites_retrieved for r in rows) / n, 4),
            "answers_with_no_invented_source": round(sum(r.invents_no_source for r in rows) / n, 4),
            "answers_citing_answer_chunk": round(sum(r.cites_answer_chunk for r in rows) / n, 4),
            "answers_right": round(sum(r.verdict == "right" for r in rows) / n, 4),
            "answers_repeating_an_id": round(sum(bool(r.repeated) for r in rows) / n, 4),
            "answers_saying_unanswerable": round(sum(r.answerable is False for r in rows) / n, 4)}


@dataclass(frozen=True)
class Unanswerable:
    """A question the document does not answer, and the free-text phrasings that count as abstaining."""

    id: str
    question: str
    abstain: tuple[str, ...]

    def abstains(self, answer: str, answerable: bool | None = None) -> tuple[bool, str]:
        """(abstained, how): `answerable` false in a JSON answer, or a don't-know phrasing in the text. The rule for
        a verdict: `tally.check(answer, item.abstains)` (with `answerable` bound for a JSON answer)."""
        if answerable is False:
            return True, "abstains: answerable false"
        said = next((p for p in self.abstain if p.lower() in (answer or "").lower()), None)
        if said:
            return True, f"abstains: says {said!r}" + (" (though answerable is true)" if answerable else "")
        return False, ("does not abstain on a question the documents do not answer" +
                       (" (answerable true)" if answerable else ""))


def load_unanswerable(name: str = UNANSWERABLE_SET) -> list[Unanswerable]:
    """The questions the course's document does not answer (data/handbook_unanswerable.json)."""
    raw = json.loads(data_path(name).read_text(encoding="utf-8"))
    phrases = tuple(raw["abstain"])
    return [Unanswerable(q["id"], q["question"], phrases) for q in raw["questions"]]


def abstention_rate(abstained: Sequence[bool]) -> float:
    """The share of unanswerable questions on which the answer abstained."""
    if not abstained:
        raise RagError("No unanswerable questions were asked: nothing to measure abstention on.")
    return round(sum(bool(a) for a in abstained) / len(abstained), 4)
