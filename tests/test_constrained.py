"""Constrained decoding without a model: random logits masked by the grammar must still give valid, finite JSON."""

from __future__ import annotations

import json

import jsonschema
import pytest
import torch
from pydantic import BaseModel

from helpers.endpoint.constrained import (
    Bounds,
    GrammarCache,
    bound_schema,
    json_value_ebnf,
    tool_calls_schema,
)


class Line(BaseModel):
    sku: str
    qty: int
    price: float


class Order(BaseModel):
    customer: str
    lines: list[Line]
    notes: dict[str, str] | None = None


TREE = {  # recursive: a node has children that are nodes
    "$defs": {"node": {"type": "object", "properties": {
        "label": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
        "required": ["label", "children"]}},
    "$ref": "#/$defs/node",
}


@pytest.fixture(scope="module")
def grammars():
    from transformers import AutoTokenizer

    from helpers.course.standin import standin_path

    return GrammarCache(AutoTokenizer.from_pretrained(standin_path()), 32768, [2])


def sample(grammars: GrammarCache, compiled, seed: int, limit: int = 400) -> str:
    """Decode with random logits (a worst-case 'model') under the grammar; return the text."""
    gen = torch.Generator().manual_seed(seed)
    constraint = grammars.matcher(compiled)
    ids = []
    for _ in range(limit):
        logits = torch.randn(1, 32768, generator=gen) * 3
        constraint.mask(logits)
        tok = int(torch.multinomial(torch.softmax(logits, -1)[0], 1, generator=gen))
        assert constraint.accept(tok)
        if constraint.finished:
            return grammars_decode(ids)
        ids.append(tok)
    raise AssertionError(f"grammar did not finish within {limit} tokens")


def grammars_decode(ids):
    from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    return MistralTokenizer.v3().instruct_tokenizer.tokenizer.decode(ids, special_token_policy=SpecialTokenPolicy.IGNORE)


def test_bound_schema_inlines_refs_and_caps_sizes():
    bounded = bound_schema(Order.model_json_schema())
    text = json.dumps(bounded)
    assert "$ref" not in text and "$defs" not in text
    assert bounded["properties"]["lines"]["maxItems"] == Bounds().max_items
    assert "pattern" in bounded["properties"]["customer"]
    qty = bounded["properties"]["lines"]["items"]["properties"]["qty"]
    assert qty["minimum"] == -Bounds().max_int and qty["maximum"] == Bounds().max_int


def test_bound_schema_keeps_tighter_user_bounds_and_enums():
    schema = {"type": "object", "properties": {"code": {"type": "string", "maxLength": 3},
                                               "unit": {"type": "string", "enum": ["EUR", "USD"]},
                                               "n": {"type": "integer", "minimum": 5}}}
    out = bound_schema(schema)["properties"]
    assert out["code"]["pattern"].endswith("{0,3}$")
    assert out["unit"] == {"type": "string", "enum": ["EUR", "USD"]}
    assert out["n"]["minimum"] == 5 and out["n"]["maximum"] > 5


def test_recursive_schema_becomes_finite():
    bounded = bound_schema(TREE)
    depth, node = 0, bounded
    while node["properties"]["children"]["maxItems"] > 0:
        node, depth = node["properties"]["children"]["items"], depth + 1
    # nesting counts objects and arrays alike: node(0) → children(1) → node(2) → children(3) = empty
    assert depth == (Bounds().max_depth - 1) // 2


@pytest.mark.parametrize("schema", [Order.model_json_schema(), TREE,
                                    {"type": "object", "additionalProperties": {"type": "integer"}}])
def test_random_logits_give_valid_json(grammars, schema):
    compiled = grammars.json_schema(bound_schema(schema))
    for seed in range(8):
        jsonschema.validate(json.loads(sample(grammars, compiled, seed)), schema)


def test_tool_call_payload_is_one_valid_call(grammars):
    tools = [{"type": "function", "function": {"name": "pay", "parameters": Order.model_json_schema()}},
             {"type": "function", "function": {"name": "noop", "parameters": {"type": "object", "properties": {}}}}]
    compiled = grammars.json_schema(tool_calls_schema(tools), leading_space=True)
    names = set()
    for seed in range(10):
        [call] = json.loads(sample(grammars, compiled, seed))
        names.add(call["name"])
        if call["name"] == "pay":
            Order.model_validate(call["arguments"])
        else:
            assert call["arguments"] == {}
    assert names == {"pay", "noop"}


def test_json_object_grammar_gives_objects(grammars):
    compiled = grammars.ebnf(json_value_ebnf())
    for seed in range(10):
        assert isinstance(json.loads(sample(grammars, compiled, seed)), dict)


def test_compiled_grammars_are_cached(grammars):
    schema = bound_schema({"type": "object", "properties": {"x": {"type": "boolean"}}, "required": ["x"]})
    first = grammars.json_schema(schema)
    hits = grammars.hits
    assert grammars.json_schema(json.loads(json.dumps(schema))) is first
    assert grammars.hits == hits + 1


def test_closing_score_reads_the_string_state():
    from helpers.endpoint.constrained import IN, OUT, closing_step

    # outside a string, closers score high; inside one, the same brackets are junk content
    assert closing_step("]]", OUT)[0] > 20 and closing_step("]],", IN)[0] < 0
    assert 0 < closing_step("]],", OUT)[0] < closing_step("]]", OUT)[0]  # a comma after closers starts another item
    assert closing_step('"}', IN) == (closing_step('"}', IN)[0], OUT) and closing_step('"}', IN)[0] > 20
    assert closing_step('""', OUT)[0] > closing_step('","', OUT)[0]  # an empty string beats a comma in one
    assert closing_step("transaction", IN)[0] > closing_step("trans", IN)[0] > 0  # a spelled-out key: longest
    assert closing_step('a\\"', IN)[1] == IN  # an escaped quote does not close the string


def test_plan_closes_a_free_string_at_once_and_tracks_state_through_rollback(grammars):
    schema = bound_schema({"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
                          Bounds.for_model(False, tiny=True))
    from helpers.endpoint.constrained import IN

    constraint = grammars.matcher(grammars.json_schema(schema))
    written = []
    for t in constraint.plan_to_finish():  # walk the start of the plan up to the value's colon
        assert constraint.accept(t)
        written.append(t)
        if grammars_decode(written).rstrip().endswith(":"):
            break
    quote = next((t for t in grammars.hf_tokenizer.convert_tokens_to_ids(['"', '▁"']) if constraint.accept(t)), None)
    written.append(quote)
    assert quote and constraint._lex[-1] == IN, grammars_decode(written)  # inside the value's string
    plan = constraint.plan_to_finish()
    assert json.loads(grammars_decode(written + plan[:-1])) == {"id": ""}  # closed at once, not `]],]],…`
    letter = grammars.hf_tokenizer.convert_tokens_to_ids("T")
    assert constraint.accept(letter)
    constraint.rollback(1)
    assert constraint._lex[-1] == IN and constraint.plan_to_finish() == plan


def test_a_tiny_models_strings_keep_the_schemas_own_max_length():
    """The tiny-model bound (48) is for strings with no limit; a schema's maxLength (an answer of up to 120
    characters) is the limit it asked for, and the grammar honours it."""
    from helpers.endpoint.constrained import ROOMY_STRING, Bounds, bound_schema

    tiny = Bounds.for_model(is_standin=False, tiny=True)
    schema = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 120},
                                               "note": {"type": "string"},
                                               "essay": {"type": "string", "maxLength": 10**6}}}
    props = bound_schema(schema, tiny)["properties"]
    assert props["answer"]["maxLength"] == 120 and props["note"]["maxLength"] == 48
    assert props["essay"]["maxLength"] == ROOMY_STRING
    standin = bound_schema(schema, Bounds.for_model(is_standin=True))["properties"]  # regex-bounded: 16 at most
    assert standin["answer"]["pattern"].endswith("{0,16}$")
