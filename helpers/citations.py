"""Grounded answers that cite what they used, as data: `{"answerable": ..., "answer": ..., "sources": [...]}`, sources
limited to the ids of the chunks actually retrieved, each answer checked against the eval question's key fact, and
questions the documents do not answer checked for abstention (`answerable: false`, sources then empty).

Used by notebooks 05 (through `response_format` json_schema on `chat.complete`: La Plateforme, or the local endpoint
whose constrained decoding enforces the schema) and 08 (xgrammar's logits processor on `model.generate`). The
prompt-only `[c012]` style (`rag.grounded_prompt`) is measured beside it with the same three shares.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .rag import EvalItem, Hit, RagError, cited_ids, is_relevant
from .settings import data_path

# two sentences of about 20 words: room for the fact and its context, not for an essay (120 cut 6 of 05's 10 answers)
ANSWER_CHARS = 240
UNANSWERABLE_SET = "handbook_unanswerable.json"


def citation_schema(ids: Sequence[str], answer_chars: int = ANSWER_CHARS) -> dict[str, Any]:
    """JSON schema of a cited answer: `answerable` (false: the context does not answer, and `sources` may be empty),
    a short `answer`, and `sources` drawn only from `ids`, each at most once (`uniqueItems`)."""
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise RagError("No retrieved chunk ids to cite: retrieve at least one chunk first.")
    return {"type": "object", "additionalProperties": False, "required": ["answerable", "answer", "sources"],
            "properties": {
                "answerable": {"type": "boolean"},
                "answer": {"type": "string", "maxLength": int(answer_chars)},
                "sources": {"type": "array", "items": {"type": "string", "enum": ids}, "uniqueItems": True,
                            "minItems": 0, "maxItems": len(ids)}}}


def citation_format(ids: Sequence[str], answer_chars: int = ANSWER_CHARS) -> dict[str, Any]:
    """The `response_format` for `chat.complete`: json_schema, strict, with `citation_schema(ids)`."""
    return {"type": "json_schema",
            "json_schema": {"name": "cited_answer", "strict": True, "schema": citation_schema(ids, answer_chars)}}


def cited_prompt(question: str, hits: Sequence[Hit]) -> str:
    """The grounded prompt for a JSON answer: the context chunks with their ids, and the shape to reply in."""
    if not question or not question.strip():
        raise RagError("The question is empty: ask something.")
    context = "\n\n".join(f"[{h.chunk.id}] {h.chunk.text.strip()}" for h in hits)
    return ("Answer the question in one or two short sentences, using only the context below, and list the ids of "
            "the chunks your answer comes from, each once. Reply in JSON: {\"answerable\": true, \"answer\": \"...\", "
            "\"sources\": [\"c012\"]}. If the context does not contain the answer, reply {\"answerable\": false, "
            "\"answer\": \"I don't know\", \"sources\": []}.\n\n"
            f"Context:\n{context}\n\nQuestion: {question.strip()}")


class Cited(NamedTuple):
    """A parsed JSON answer: its text, the ids it cites (as written, repeats included), whether it parsed, and its
    `answerable` flag (None when the reply has none)."""

    answer: str
    sources: list[str]
    parsed: bool
    answerable: bool | None = None


def parse_cited(content: str | None) -> Cited:
    """The answer, sources, parsed flag and `answerable` of a JSON reply; a reply that is not the expected JSON gives
    ("", [], False, None)."""
    try:
        data = json.loads(content or "")
    except ValueError:
        return Cited("", [], False)
    if not isinstance(data, dict) or not isinstance(data.get("answer"), str) or \
            not isinstance(data.get("sources"), list):
        return Cited("", [], False)
    flag = data.get("answerable")
    return Cited(data["answer"], [s for s in data["sources"] if isinstance(s, str)], True,
                 flag if isinstance(flag, bool) else None)


def repeated_ids(cited: Sequence[str]) -> list[str]:
    """The ids a reply cites more than once (`uniqueItems` asks for none; a decoder may not enforce it)."""
    return [i for i in dict.fromkeys(cited) if list(cited).count(i) > 1]


@dataclass
class Checked:
    """One grounded answer and what was checked about it: its citations, and whether it states the key fact."""

    question: str
    style: str  # "prompt-only [c012]" or "json_schema"
    answer: str
    cited: list[str]
    retrieved: list[str]
    answer_chunks: list[str]  # the retrieved chunks that hold the answer passage
    verdict: str = ""  # right / wrong / cut / unchecked, from helpers.course.verdicts
    extra: dict[str, Any] = field(default_factory=dict)
    repeated: list[str] = field(default_factory=list)  # ids the reply cited more than once (`cited` holds each once)
    answerable: bool | None = None  # the JSON answer's flag; None for prompt-only answers

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
                "repeated ids": self.repeated, "verdict": self.verdict, "answer": self.answer}


def check(question: EvalItem, hits: Sequence[Hit], style: str, answer: str, cited: Sequence[str],
          verdict: str = "", answerable: bool | None = None) -> Checked:
    """Record an answer with the ids it cites (each once; repeats flagged in `repeated`), the ids retrieved, and which
    retrieved chunks hold the answer."""
    return Checked(question.question, style, answer, list(dict.fromkeys(cited)), [h.chunk.id for h in hits],
                   [h.chunk.id for h in hits if is_relevant(h.chunk, question)], verdict,
                   repeated=repeated_ids(cited), answerable=answerable)


def prompt_only_citations(answer: str) -> list[str]:
    """The `[c012]` ids a free-text answer cites (rag.cited_ids)."""
    return cited_ids(answer)


def shares(rows: Sequence[Checked]) -> dict[str, float | int]:
    """answers_citing_retrieved_chunk, answers_with_no_invented_source, answers_citing_answer_chunk, answers_right
    (shares of `rows`), answers_checked, answers_repeating_an_id (how many replies cited an id more than once, before
    `check` kept each once), and answers_saying_unanswerable (the share flagged `answerable: false`: on questions the
    documents do answer, each one is an abstention too many)."""
    if not rows:
        raise RagError("No answers to summarise.")
    n = len(rows)
    return {"answers_checked": n,
            "answers_citing_retrieved_chunk": round(sum(r.cites_retrieved for r in rows) / n, 4),
            "answers_with_no_invented_source": round(sum(r.invents_no_source for r in rows) / n, 4),
            "answers_citing_answer_chunk": round(sum(r.cites_answer_chunk for r in rows) / n, 4),
            "answers_right": round(sum(r.verdict == "right" for r in rows) / n, 4),
            "answers_repeating_an_id": sum(bool(r.repeated) for r in rows),
            "answers_saying_unanswerable": round(sum(r.answerable is False for r in rows) / n, 4)}


# ---------------------------------------------------------------- questions the documents do not answer
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
        return False, ("answers a question the documents do not answer" +
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


# ---------------------------------------------------------------- in-process constrained decoding (notebook 08)
_compilers: dict[int, Any] = {}


def constrained_generate(lm: Any, prompt: str, schema: dict[str, Any], max_new_tokens: int) -> tuple[str, int]:
    """Greedy `model.generate` under an xgrammar JSON-schema grammar: (text, new tokens). The grammar ends the reply
    once the JSON is complete, so `max_new_tokens` is a ceiling, not what each answer costs."""
    import torch
    import xgrammar as xgr
    from xgrammar.contrib.hf import LogitsProcessor

    from .inference import chat_inputs

    key = id(lm.tokenizer)
    if key not in _compilers:
        info = xgr.TokenizerInfo.from_huggingface(lm.tokenizer, vocab_size=lm.model.config.vocab_size)
        _compilers[key] = xgr.GrammarCompiler(info)
    compiled = _compilers[key].compile_json_schema(json.dumps(schema), any_whitespace=False)
    inputs = chat_inputs(lm, prompt)
    with torch.inference_mode():
        out = lm.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                logits_processor=[LogitsProcessor(compiled)], pad_token_id=lm.tokenizer.pad_token_id)
    new = out[0, inputs["input_ids"].shape[1]:]
    return lm.tokenizer.decode(new, skip_special_tokens=True), int(new.shape[0])


def worst_case_tokens(schema: dict[str, Any], id_tokens: int = 4) -> int:
    """A ceiling on the tokens a reply to `citation_schema` can take: 4 per answer character (a byte-level tokenizer
    may spend one token per UTF-8 byte), each source `id_tokens` plus its quotes and comma, and the JSON around them
    (16, and 8 for the `answerable` flag). Constrained decoding stops when the JSON closes, so a generous ceiling costs
    nothing."""
    props = schema["properties"]
    flag = 8 if "answerable" in props else 0
    return 4 * props["answer"]["maxLength"] + props["sources"]["maxItems"] * (id_tokens + 3) + 16 + flag
