"""helpers.citations: the schema admits only retrieved ids, replies parse or say they don't, the three shares count
what they say, and constrained decoding (the local endpoint, and xgrammar on generate) makes even a random-weight
model cite only retrieved chunks."""

from __future__ import annotations

import json

import jsonschema
import pytest

from helpers import citations, rag
from helpers.course.evals import grounding, retrieval
from helpers.course.evals.retrieval import EvalItem
from helpers.rag import Chunk, Hit

DOC = "Cards cost nothing. A replacement card costs 5 euros. Express cards cost 20 euros. Disputes take 120 days."
CHUNKS = rag.chunk_sentences(DOC, max_chars=40, overlap=0)
HITS = [Hit(i + 1, 1.0, c) for i, c in enumerate(CHUNKS[:3])]
ITEM = EvalItem("q", "What does an express card cost?", "Express cards cost 20 euros.",
                DOC.index("Express"), DOC.index("Express") + 28, key=("20 euros",))


def test_schema_admits_only_retrieved_ids_each_once_and_lets_the_model_abstain():
    ids = [h.chunk.id for h in HITS]
    schema = citations.citation_schema(ids, answer_chars=50)
    jsonschema.validate({"answerable": True, "answer": "20 euros", "sources": [ids[0]]}, schema)
    jsonschema.validate({"answerable": False, "answer": "I don't know", "sources": []}, schema)  # abstaining
    for bad in ({"answerable": True, "answer": "x", "sources": ["c999"]},
                {"answerable": True, "answer": "x", "sources": [ids[0], ids[0]]},  # uniqueItems
                {"answerable": True, "answer": "x" * 51, "sources": [ids[0]]},
                {"answerable": True, "answer": "x", "sources": [ids[0]], "extra": 1},
                {"answer": "x", "sources": [ids[0]]}, {"answerable": "no", "answer": "x", "sources": []}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    fmt = citations.citation_format(ids + ids[:1])
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["properties"]["sources"]["items"]["enum"] == ids  # duplicates dropped
    with pytest.raises(rag.RagError):
        citations.citation_schema([])


def test_parse_cited_accepts_the_shape_and_refuses_the_rest():
    assert citations.parse_cited('{"answer": "20 euros", "sources": ["c002"]}') == ("20 euros", ["c002"], True, None)
    got = citations.parse_cited('{"answerable": false, "answer": "I don\'t know", "sources": []}')
    assert got.answerable is False and got.parsed and got.sources == []
    repeated = citations.parse_cited('{"answerable": true, "answer": "x", "sources": ["c004", "c004", "c004"]}')
    assert repeated.sources == ["c004"] * 3  # as written: the checking code flags the repeat
    for bad in ("20 euros [c002]", '{"answer": 3, "sources": []}', '["c002"]', None, '{"answer": "x"}'):
        assert citations.parse_cited(bad) == ("", [], False, None)


def test_check_keeps_each_cited_id_once_and_flags_repeats():
    ids = [h.chunk.id for h in HITS]
    row = grounding.check(ITEM, HITS, "json_schema", "x", [ids[1], ids[1], ids[0], ids[1]], "wrong", answerable=True)
    assert row.cited == [ids[1], ids[0]] and row.repeated == [ids[1]] and row.answerable is True
    assert grounding.repeated_ids(["a", "b", "a"]) == ["a"] and grounding.repeated_ids(["a", "b"]) == []
    assert grounding.shares([row])["answers_repeating_an_id"] == 1.0  # a share, like the others
    abstaining = grounding.check(ITEM, HITS, "json_schema", "I don't know", [], "wrong", answerable=False)
    assert grounding.shares([row, abstaining])["answers_saying_unanswerable"] == 0.5


def test_shares_count_retrieved_answer_chunk_and_right():
    answer_chunk = next(h.chunk.id for h in HITS if retrieval.is_relevant(h.chunk, ITEM))
    other = next(h.chunk.id for h in HITS if h.chunk.id != answer_chunk)
    rows = [grounding.check(ITEM, HITS, "json_schema", "20 euros", [answer_chunk], "right"),
            grounding.check(ITEM, HITS, "json_schema", "5 euros", [other], "wrong"),
            grounding.check(ITEM, HITS, "prompt-only", "20 euros", ["c999"], "right"),
            grounding.check(ITEM, HITS, "prompt-only", "I don't know", [], "wrong")]
    assert rows[0].answer_chunks == [answer_chunk]
    assert grounding.shares(rows) == {"answers_checked": 4, "answers_citing_retrieved_chunk": 0.5,
                                      "answers_with_no_invented_source": 0.75,  # c999 was never retrieved
                                      "answers_citing_answer_chunk": 0.25, "answers_right": 0.5,
                                      "answers_repeating_an_id": 0.0, "answers_saying_unanswerable": 0.0}
    assert grounding.prompt_only_citations("It costs 20 euros [c002], see [c001].") == ["c002", "c001"]
    with pytest.raises(rag.RagError):
        grounding.shares([])


def test_a_verdict_object_counts_by_its_kind_and_its_row_shows_why():
    from helpers.course.verdicts import Verdict

    rows = [grounding.check(ITEM, HITS, "free text", "20 euros", [], Verdict("right", "says '20 euros'")),
            grounding.check(ITEM, HITS, "free text", "5 euros", [], Verdict("wrong", "misses ['20 euros']"))]
    assert [r.verdict for r in rows] == ["right", "wrong"] and grounding.shares(rows)["answers_right"] == 0.5
    assert rows[1].row()["verdict"] == "wrong: misses ['20 euros']"
    assert grounding.check(ITEM, HITS, "free text", "20 euros", [], "right").row()["verdict"] == "right"


def test_prompt_lists_the_chunks_with_their_ids():
    prompt = citations.cited_prompt("What does an express card cost?", HITS)
    assert all(f"[{h.chunk.id}] {h.chunk.text}" in prompt for h in HITS) and '"sources"' in prompt
    with pytest.raises(rag.RagError):
        citations.cited_prompt("  ", HITS)


def test_worst_case_tokens_bounds_the_schema():
    schema = citations.citation_schema(["c001", "c002"], answer_chars=30)
    assert citations.worst_case_tokens(schema) == 4 * 30 + 2 * 7 + 16 + 8  # 8: the answerable flag


def test_unanswerable_questions_are_not_answered_by_the_document_and_abstention_is_judged():
    document = rag.load_document()
    items = grounding.load_unanswerable()
    assert len(items) >= 3 and len({i.id for i in items}) == len(items)
    assert not {i.question for i in items} & {q.question for q in retrieval.load_eval_set()}
    for needle in ("share price", "chief executive", "founded", "cryptocurrency"):
        assert needle not in document.lower()  # what the questions ask is not in the handbook
    item = items[0]
    assert item.abstains("A share costs 12 euros.", answerable=False)[0]  # the flag says it
    assert item.abstains("I don't know.", answerable=None)[0]  # prompt-only: the words say it
    ok, how = item.abstains("A share costs 12 euros.", answerable=True)
    assert not ok and "answerable true" in how
    assert grounding.abstention_rate([True, False, False, True]) == 0.5
    with pytest.raises(rag.RagError):
        grounding.abstention_rate([])


def test_constrained_generate_cites_only_retrieved_chunks_even_from_random_weights():
    from helpers import selfhost

    lm = selfhost.load_model("standin", "fp32", "cpu")
    ids = ["c004", "c017", "c023"]
    schema = citations.citation_schema(ids, answer_chars=12)
    hits = [Hit(i + 1, 1.0, Chunk(cid, f"text {cid}", 0, 1)) for i, cid in enumerate(ids)]
    for question in ("What does it cost?", "How long?"):
        text, tokens = citations.constrained_generate(lm, citations.cited_prompt(question, hits), schema,
                                                      citations.worst_case_tokens(schema))
        answer, sources, parsed, answerable = citations.parse_cited(text)
        assert parsed and isinstance(answerable, bool), text
        assert set(sources) <= set(ids) and len(answer) <= 12
        assert tokens <= citations.worst_case_tokens(schema)


def test_the_local_endpoint_enforces_the_citation_schema():
    from mistralai.client import Mistral

    from helpers import endpoint as srv
    from helpers.settings import DEFAULT_LOCAL_EMBED_MODEL

    url = srv.ensure_server(model="standin", embed_model=DEFAULT_LOCAL_EMBED_MODEL, device="cpu")
    client = Mistral(api_key="any", server_url=url)
    ids = [h.chunk.id for h in HITS]
    for seed in range(3):
        reply = client.chat.complete(model="mistral-small-latest", max_tokens=48, random_seed=seed,
                                     messages=[{"role": "user", "content": citations.cited_prompt(ITEM.question, HITS)}],
                                     response_format=citations.citation_format(ids))
        data = json.loads(reply.choices[0].message.content)
        # xgrammar does not enforce uniqueItems: the checking code keeps each id once (grounding.check), so validate
        # what it keeps
        jsonschema.validate({**data, "sources": list(dict.fromkeys(data["sources"]))}, citations.citation_schema(ids))
        assert set(data["sources"]) <= set(ids) and isinstance(data["answerable"], bool)
