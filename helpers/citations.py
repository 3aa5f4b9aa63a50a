"""Grounded answers that cite what they used, as data: `{"answer": ..., "sources": [...]}`, sources limited to the
ids of the chunks actually retrieved, and each answer checked against the eval question's key fact.

Used by notebooks 05 (through `response_format` json_schema on `chat.complete`: La Plateforme, or the local endpoint
whose constrained decoding enforces the schema) and 08 (xgrammar's logits processor on `model.generate`). The
prompt-only `[c012]` style (`rag.grounded_prompt`) is measured beside it with the same three shares.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .rag import EvalItem, Hit, RagError, cited_ids, is_relevant

ANSWER_CHARS = 120  # one sentence of about 20 words: room for the fact and its context, not for an essay


def citation_schema(ids: Sequence[str], answer_chars: int = ANSWER_CHARS) -> dict[str, Any]:
    """JSON schema of a cited answer: a short `answer` string, and `sources` drawn only from `ids` (at least one)."""
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise RagError("No retrieved chunk ids to cite: retrieve at least one chunk first.")
    return {"type": "object", "additionalProperties": False, "required": ["answer", "sources"], "properties": {
        "answer": {"type": "string", "maxLength": int(answer_chars)},
        "sources": {"type": "array", "items": {"type": "string", "enum": ids}, "minItems": 1, "maxItems": len(ids)}}}


def citation_format(ids: Sequence[str], answer_chars: int = ANSWER_CHARS) -> dict[str, Any]:
    """The `response_format` for `chat.complete`: json_schema, strict, with `citation_schema(ids)`."""
    return {"type": "json_schema",
            "json_schema": {"name": "cited_answer", "strict": True, "schema": citation_schema(ids, answer_chars)}}


def cited_prompt(question: str, hits: Sequence[Hit]) -> str:
    """The grounded prompt for a JSON answer: the context chunks with their ids, and the shape to reply in."""
    if not question or not question.strip():
        raise RagError("The question is empty: ask something.")
    context = "\n\n".join(f"[{h.chunk.id}] {h.chunk.text.strip()}" for h in hits)
    return ("Answer the question in one short sentence, using only the context below, and list the ids of the "
            "chunks your answer comes from. Reply in JSON: {\"answer\": \"...\", \"sources\": [\"c012\"]}. If the "
            "context does not contain the answer, say \"I don't know\" in the answer.\n\n"
            f"Context:\n{context}\n\nQuestion: {question.strip()}")


def parse_cited(content: str | None) -> tuple[str, list[str], bool]:
    """(answer, sources, parsed) from a JSON reply; a reply that is not the expected JSON gives ("", [], False)."""
    try:
        data = json.loads(content or "")
    except ValueError:
        return "", [], False
    if not isinstance(data, dict) or not isinstance(data.get("answer"), str) or \
            not isinstance(data.get("sources"), list):
        return "", [], False
    return data["answer"], [s for s in data["sources"] if isinstance(s, str)], True


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

    @property
    def cites_retrieved(self) -> bool:
        return bool(set(self.cited) & set(self.retrieved))

    @property
    def cites_answer_chunk(self) -> bool:
        return bool(set(self.cited) & set(self.answer_chunks))

    def row(self) -> dict[str, Any]:
        return {"style": self.style, "question": self.question, "retrieved": self.retrieved, "cited": self.cited,
                "cites a retrieved chunk": self.cites_retrieved, "cites the answer's chunk": self.cites_answer_chunk,
                "verdict": self.verdict, "answer": self.answer}


def check(question: EvalItem, hits: Sequence[Hit], style: str, answer: str, cited: Sequence[str],
          verdict: str = "") -> Checked:
    """Record an answer with the ids it cites, the ids retrieved, and which retrieved chunks hold the answer."""
    return Checked(question.question, style, answer, list(cited), [h.chunk.id for h in hits],
                   [h.chunk.id for h in hits if is_relevant(h.chunk, question)], verdict)


def prompt_only_citations(answer: str) -> list[str]:
    """The `[c012]` ids a free-text answer cites (rag.cited_ids)."""
    return cited_ids(answer)


def shares(rows: Sequence[Checked]) -> dict[str, float | int]:
    """answers_citing_retrieved_chunk, answers_citing_answer_chunk, answers_right (shares of `rows`), answers_checked."""
    if not rows:
        raise RagError("No answers to summarise.")
    n = len(rows)
    return {"answers_checked": n,
            "answers_citing_retrieved_chunk": round(sum(r.cites_retrieved for r in rows) / n, 4),
            "answers_citing_answer_chunk": round(sum(r.cites_answer_chunk for r in rows) / n, 4),
            "answers_right": round(sum(r.verdict == "right" for r in rows) / n, 4)}


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
    (16). Constrained decoding stops when the JSON closes, so a generous ceiling costs nothing."""
    props = schema["properties"]
    return 4 * props["answer"]["maxLength"] + props["sources"]["maxItems"] * (id_tokens + 3) + 16
