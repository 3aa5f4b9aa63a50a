"""Grounded answers that cite what they used, as data: `{"answerable": ..., "answer": ..., "sources": [...]}`, sources
limited to the ids of the chunks actually retrieved (`answerable: false` when the documents do not answer; sources
may then be empty). How the answers are judged lives with the course's evals (`helpers/course/evals/grounding.py`).

Used by notebooks 05 (through `response_format` json_schema on `chat.complete`: La Plateforme, or the local endpoint
whose constrained decoding enforces the schema) and 08 (xgrammar's logits processor on `model.generate`). The
prompt-only `[c012]` style (`rag.grounded_prompt`) is measured beside it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from .rag import Hit, RagError

# two sentences of about 20 words: room for the fact and its context, not for an essay (120 cut 6 of 05's 10 answers)
ANSWER_CHARS = 240


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


# ---------------------------------------------------------------- questions the documents do not answer


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
