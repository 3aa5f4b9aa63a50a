"""Constrained decoding with xgrammar: the model can only emit tokens that keep the output valid.

This is how the local endpoint gives what La Plateforme gives for free: `tool_choice="any"` calls whose
arguments always validate against the tool's JSON schema, and `response_format` JSON that always parses.
At each step a `GrammarMatcher` masks out every token that would break the grammar (a bitmask over the
vocabulary applied to the logits), then the sampler picks among what is left.

Even a random-weight model must *finish* within `max_tokens`, so schemas are first made finite by
:func:`bound_schema`: strings get a `maxLength`, arrays a `maxItems`, objects a `maxProperties`, numbers a
range, and `$ref`s are inlined to a fixed depth. Bounds only narrow a schema, so anything that validates
against the bounded schema validates against the original. Compiled grammars are cached by schema.

The plan to finish (:meth:`Constraint.plan_to_finish`) is what budget-aware decoding counts: scored with the JSON
string state in view (a free string is closed at once) and counted in the tokens the tokenizer itself would use.

Why the engine keeps its own decode loop instead of `model.generate(logits_processor=[xgrammar.contrib.hf.
LogitsProcessor(...)])` (notebook 09 shows that integration): measured on 2026-11-25 (SmolLM2-135M, CPU, a forced
tool call, 5 greedy runs, load average ~3), both cost the same per token (163.7 vs 164.8 ms median), so speed
decides nothing. The loop stays for what a logits processor cannot do: budget-aware decoding *chooses* tokens from a
plan to close the structure in time (a processor can only mask), `tool_choice="auto"` switches a grammar on when
the model emits `[TOOL_CALLS]`, the KV cache of a shared prompt prefix is reused across requests, a request can be
cancelled between tokens, and text streams with stop strings held back. (`generate` with the processor also let
the model fill the budget with indentation whitespace the grammar allows.)
"""

from __future__ import annotations

import copy
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

ROOMY_STRING = 2048  # the longest string any constrained output may hold


@dataclass(frozen=True)
class Bounds:
    """How far a constrained output may grow: keeps a random model's JSON finite."""

    max_string: int = 16
    max_items: int = 3
    max_properties: int = 4
    max_depth: int = 3
    max_int: int = 10**6
    plain_strings: bool = True  # strings as a regex without escapes/control chars (compiles only for short bounds)

    @classmethod
    def for_model(cls, is_standin: bool, tiny: bool = False) -> Bounds:
        """Tight bounds for the random stand-in (it never closes a string on its own), middling ones for a tiny real
        model (SmolLM2-135M sometimes rambles inside a string: `"T1001.001.001…"`), roomy ones for real models."""
        if is_standin:
            return cls()
        if tiny:  # a string whose schema gives maxLength may grow to it (the answer a schema asks for, not cut at 48)
            return cls(max_string=48, max_items=8, max_properties=8, max_depth=4, max_int=10**9, plain_strings=False)
        return cls(max_string=ROOMY_STRING, max_items=64, max_properties=32, max_depth=6, max_int=10**15, plain_strings=False)


_STRING_BOUNDED = ("enum", "const", "format", "pattern")


def _resolve_ref(ref: str, root: dict) -> dict:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $refs are supported, got {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def bound_schema(schema: dict, bounds: Bounds = Bounds()) -> dict:
    """A copy of a JSON schema made finite (see module doc); `$ref`s inlined, `$defs` dropped."""
    root = copy.deepcopy(schema)
    path_refs: list[str] = []  # the $refs followed on the way to the current node

    def walk(node: Any, depth: int) -> Any:
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            ref = node["$ref"]
            if not isinstance(ref, str):
                raise ValueError(f"$ref must be a string, not {type(ref).__name__}")
            # a finite schema may nest as deep as it likes (the request's depth limit caps it); only a $ref that
            # comes back to itself past the depth bound, through required fields or anyOf, never ends
            if path_refs.count(ref) > bounds.max_depth + 8:
                raise ValueError(f"JSON schema recurses through {ref!r} without end (through required fields or "
                                 "anyOf); make the recursive field optional so it can be bounded")
            target = _resolve_ref(ref, root)
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            path_refs.append(ref)
            try:
                return walk(merged, depth)
            finally:
                path_refs.pop()
        out = {k: v for k, v in node.items() if k not in ("$defs", "definitions")}
        for key in ("anyOf", "oneOf", "allOf"):
            if key in out:
                out[key] = [walk(s, depth) for s in out[key]]
        types = out.get("type")
        types = types if isinstance(types, list) else [types]
        deep = depth >= bounds.max_depth
        if "string" in types and not any(k in out for k in _STRING_BOUNDED):
            explicit = out.get("maxLength")
            if explicit is not None and not bounds.plain_strings:  # the schema's own limit wins over the default,
                hi = min(int(explicit), ROOMY_STRING)  # which is there for strings that have none
            else:
                hi = min(explicit if explicit is not None else bounds.max_string, bounds.max_string)
            lo = min(out.get("minLength", 0), hi)
            if bounds.plain_strings:  # xgrammar's maxLength lets raw control characters through; a regex does not
                out.pop("maxLength", None)
                out.pop("minLength", None)
                out["pattern"] = f'^[^"\\\\\\x00-\\x1f]{{{lo},{hi}}}$'
            else:
                out["maxLength"], out["minLength"] = hi, lo
        if "integer" in types or "number" in types:
            lo = out.get("minimum", out.get("exclusiveMinimum"))
            hi = out.get("maximum", out.get("exclusiveMaximum"))
            if lo is None and hi is None:
                out["minimum"], out["maximum"] = -bounds.max_int, bounds.max_int
            elif lo is None:
                out["minimum"] = min(hi, 0) - bounds.max_int
            elif hi is None:
                out["maximum"] = max(lo, 0) + bounds.max_int
        if "array" in types or "items" in out or "prefixItems" in out:
            cap = 0 if deep else bounds.max_items
            cap = max(cap, out.get("minItems", 0))
            out["maxItems"] = min(out.get("maxItems", cap), cap)
            if out["maxItems"] == 0:
                out["items"] = {}  # never instantiated; dropping it also stops a recursive $ref here
                out.pop("prefixItems", None)
            elif isinstance(out.get("items"), dict):
                out["items"] = walk(out["items"], depth + 1)
            if "prefixItems" in out:
                out["prefixItems"] = [walk(s, depth + 1) for s in out["prefixItems"]]
        if "object" in types or "properties" in out or "additionalProperties" in out:
            props = out.get("properties") or {}
            required = list(out.get("required") or [])
            if deep:  # past the depth limit keep only what is required
                props = {k: v for k, v in props.items() if k in required}
            out["properties"] = {k: walk(v, depth + 1) for k, v in props.items()}
            extra = out.get("additionalProperties")
            if extra not in (None, False):
                out["additionalProperties"] = False if deep else (
                    walk(extra, depth + 1) if isinstance(extra, dict) else
                    walk({"type": ["string", "integer", "boolean", "null"]}, depth + 1))
                out["maxProperties"] = min(out.get("maxProperties", bounds.max_properties),
                                           max(bounds.max_properties, len(required)))
                out["propertyNames"] = {"maxLength": bounds.max_string}
        return out

    try:
        return walk(root, 0)
    except (AttributeError, TypeError, KeyError, IndexError) as exc:  # e.g. "properties": 5, "required": 3
        raise ValueError(f"malformed JSON schema ({type(exc).__name__}: {exc})") from None


def tool_calls_schema(tools: list[dict], bounds: Bounds = Bounds(), max_calls: int = 1) -> dict:
    """Schema of Mistral's tool-call payload `[{"name": ..., "arguments": {...}}, ...]`: one to `max_calls` calls
    (more than one: `parallel_tool_calls`), each to one of `tools` with arguments that validate against its schema."""
    options = []
    for tool in tools:
        fn = tool["function"]
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        options.append({
            "type": "object",
            "properties": {"name": {"const": fn["name"]}, "arguments": bound_schema(params, bounds)},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        })
    item = options[0] if len(options) == 1 else {"anyOf": options}
    return {"type": "array", "items": item, "minItems": 1, "maxItems": max(1, int(max_calls))}


def json_value_ebnf(bounds: Bounds = Bounds()) -> str:
    """EBNF for any JSON object of bounded size and depth (what `response_format=json_object` allows)."""
    n, s = bounds.max_properties - 1, bounds.max_string
    lines = [
        'root ::= obj0',
        f'str ::= "\\"" [^"\\\\\\x00-\\x1f]{{0,{s}}} "\\""',
        f'key ::= "\\"" [a-zA-Z_] [a-zA-Z0-9_]{{0,{min(s, 24) - 1}}} "\\""',
        'int ::= "-"? ("0" | [1-9] [0-9]{0,8})',
        'num ::= int ("." [0-9]{1,6})?',
        'scalar ::= str | num | "true" | "false" | "null"',
    ]
    for d in range(bounds.max_depth):
        last = d == bounds.max_depth - 1
        val = "scalar" if last else f"scalar | obj{d + 1} | arr{d + 1}"
        lines.append(f"val{d} ::= {val}")
        lines.append(f'obj{d} ::= "{{}}" | "{{" key ": " val{d} (", " key ": " val{d}){{0,{n}}} "}}"')
        lines.append(f'arr{d} ::= "[]" | "[" val{d} (", " val{d}){{0,{bounds.max_items - 1}}} "]"')
    return "\n".join(lines)


class GrammarCache:
    """One xgrammar compiler per tokenizer, with compiled grammars cached by their source (thread-safe)."""

    def __init__(self, hf_tokenizer: Any, vocab_size: int, stop_token_ids: list[int], size: int = 64) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        self.hf_tokenizer = hf_tokenizer
        self.info = xgr.TokenizerInfo.from_huggingface(hf_tokenizer, vocab_size=vocab_size,
                                                       stop_token_ids=stop_token_ids)
        self.compiler = xgr.GrammarCompiler(self.info, max_threads=2)
        self.vocab_size = vocab_size
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def _get(self, key: str, build) -> Any:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                self.hits += 1
                return self._cache[key]
        compiled = build()
        with self._lock:
            self.misses += 1
            self._cache[key] = compiled
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return compiled

    def json_schema(self, schema: dict, *, leading_space: bool = False) -> Any:
        """Compile a (bounded) JSON schema; `leading_space` allows the one space Mistral puts after `[TOOL_CALLS]`."""
        key = json.dumps(["schema", leading_space, schema], sort_keys=True)

        def build():
            xgr = self._xgr
            grammar = xgr.Grammar.from_json_schema(schema, any_whitespace=False, strict_mode=True)
            if leading_space:
                grammar = xgr.Grammar.concat(xgr.Grammar.from_ebnf('root ::= " "?'), grammar)
            return self.compiler.compile_grammar(grammar)

        return self._get(key, build)

    def ebnf(self, source: str) -> Any:
        """Compile an EBNF grammar (cached)."""
        return self._get(json.dumps(["ebnf", source]), lambda: self.compiler.compile_grammar(source))

    def matcher(self, compiled: Any) -> Constraint:
        """A fresh per-request matcher for a compiled grammar."""
        return Constraint(self._xgr.GrammarMatcher(compiled), self.vocab_size, self.closing_scores,
                          retokenize=self.retokenize, lex_after=self.lex_after)

    def retokenize(self, ids: list[int]) -> list[int] | None:
        """The token ids the tokenizer itself would use for the text of `ids` (None if it cannot say).

        A plan to finish is picked one token at a time and often spells a closing `"}]` or a value in short pieces;
        the tokenizer writes the same text in fewer tokens, and that count is what the budget must cover.
        """
        if getattr(self, "_vocab", None) is None:
            self._vocab = list(self.info.decoded_vocab)  # xgrammar builds this list anew on every access
        vocab = self._vocab
        try:
            text = b"".join(vocab[i] if isinstance(vocab[i], bytes) else str(vocab[i]).encode() for i in ids)
            return list(self.hf_tokenizer.encode(text.decode("utf-8"), add_special_tokens=False))
        except (IndexError, UnicodeDecodeError, TypeError, ValueError):
            return None

    @property
    def closing_scores(self) -> torch.Tensor:
        """Per-token preference for finishing a structure soon, one row per lexical state a token may start in
        (outside a string, inside one, just after a backslash in one); see `closing_step`. Computed once."""
        if getattr(self, "_closing", None) is None:
            rows, nexts = [], []
            for state in LEX_STATES:
                scored = [closing_step(t, state) for t in self.info.decoded_vocab]
                rows.append([sc for sc, _ in scored])
                nexts.append([nx for _, nx in scored])
            scores = torch.tensor(rows, dtype=torch.float32)
            after = torch.tensor(nexts, dtype=torch.int8)
            if scores.shape[1] < self.vocab_size:  # model vocab padded past the tokenizer's
                pad = self.vocab_size - scores.shape[1]
                scores = torch.cat([scores, torch.full((len(LEX_STATES), pad), -1e4)], dim=1)
                after = torch.cat([after, torch.zeros((len(LEX_STATES), pad), dtype=torch.int8)], dim=1)
            for stop in self.info.stop_token_ids:
                if 0 <= stop < self.vocab_size:
                    scores[:, stop] = 1e4  # when the grammar allows stopping, stop
            self._closing = scores[:, : self.vocab_size].contiguous()
            self._lex_after = after[:, : self.vocab_size].contiguous()
        return self._closing

    @property
    def lex_after(self) -> torch.Tensor:
        """[state, token] → the lexical state after the token (see `closing_step`)."""
        return self._lex_after if self.closing_scores is not None else None


OUT, IN, ESC = 0, 1, 2  # where a token starts: outside any JSON string, inside one, just after a backslash in one
LEX_STATES = (OUT, IN, ESC)


def closing_score(token: bytes | str) -> float:
    """How much a token helps to *end* a JSON structure, read from outside any string (see `closing_step`)."""
    return closing_step(token, OUT)[0]


def closing_step(token: bytes | str, state: int = OUT) -> tuple[float, int]:
    """(score, state after) for a token: how much it helps to *end* a JSON structure, read from `state`.

    Outside strings closers score high, openers low, separators over more digits (but a comma right after a closer
    in one token, as in `}},`, low: it starts another item); inside a string its closing
    quote scores high, letters and digits a little (a key or enum value the grammar spells out: the longest token
    that fits), and anything else is junk content that scores low — so a plan closes a free string at once instead
    of filling it with `]],]],…`, and writes `""` rather than `","`. Used only to plan the shortest-looking way to
    finish (`Constraint.plan_to_finish`), never to sample text.
    """
    text = token.decode("utf-8", "replace") if isinstance(token, bytes) else str(token)
    if not text:
        return -1e4, state
    score = 0.0
    after_closer = False  # a comma straight after a closer in the same token reopens what it closed: `}},` is no end
    for ch in text:
        closer_before, after_closer = after_closer, False
        if state == ESC:
            score -= 1
            state = IN
        elif state == IN:
            if ch == '"':
                score += 10
                state = OUT
            elif ch == "\\":
                score -= 1
                state = ESC
            elif ch.isalnum() or ch == "_":
                score += 0.1
            else:
                score -= 1
        elif ch in "}]":
            score += 11
            after_closer = True
        elif ch == '"':
            score += 10
            state = IN
        elif ch in "{[":
            score -= 30
        elif ch in ",:":
            score += -10 if ch == "," and closer_before else 1
        elif ch.isspace():
            score -= 1
        elif ch in ".-+eE" or ch.isdigit():
            score -= 0.5 if not ch.isdigit() else 0.1  # a number that goes on is a number not yet finished
        else:
            score += 0.1  # true/false/null: the longest token that fits
    return score, state


class Constraint:
    """The per-request grammar state: masks logits, then is told which token was picked."""

    def __init__(self, matcher: Any, vocab_size: int, closing: torch.Tensor | None = None, *,
                 retokenize: Callable[[list[int]], list[int] | None] | None = None,
                 lex_after: torch.Tensor | None = None) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        self.matcher = matcher
        self.vocab_size = vocab_size
        self.bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        if closing is not None and closing.dim() == 2 and closing.shape[0] == 1:  # one row: no string tracking
            lex_after = None
        self.closing = closing
        self.retokenize = retokenize
        self.lex_after = lex_after
        self._lex = [OUT]  # lexical state after each accepted token (for the plan's scores)

    def _next_lex(self, state: int, tok: int) -> int:
        return int(self.lex_after[state, tok]) if self.lex_after is not None and 0 <= tok < self.vocab_size else state

    def _scores(self, state: int) -> torch.Tensor:
        row = state if self.lex_after is not None else 0
        return self.closing[row: row + 1].clone()

    def plan_to_finish(self, cap: int = 512) -> list[int] | None:
        """A valid way to finish from the current state, greedily closing structures: token ids up to and
        including the stop token (None when none is found within `cap` tokens). The state is left unchanged.

        Its length is what the remaining `max_tokens` must cover: budget-aware decoding (ChatEngine.generate)
        steers onto this path whenever a freely sampled token would leave too little room to finish. Picked one
        token at a time, then re-encoded by the tokenizer: the shorter spelling the grammar accepts is the plan.
        """
        if self.closing is None:
            return None
        fork = self.matcher.fork()
        bitmask = self._xgr.allocate_token_bitmask(1, self.vocab_size)
        path: list[int] = []
        state = self._lex[-1]
        while not fork.is_terminated():
            if len(path) >= cap + 16:  # a little past the cap: the tokenizer may write it shorter
                return None
            fork.fill_next_token_bitmask(bitmask)
            scores = self._scores(state)
            self._xgr.apply_token_bitmask_inplace(scores, bitmask, vocab_size=self.vocab_size)
            tok = int(torch.argmax(scores))
            if scores[0, tok] == float("-inf") or not fork.accept_token(tok):
                return None
            path.append(tok)
            state = self._next_lex(state, tok)
        shorter = self._as_tokenized(path)
        if shorter is not None and len(shorter) < len(path):
            path = shorter
        return path if len(path) <= cap else None

    def _as_tokenized(self, path: list[int]) -> list[int] | None:
        """`path` (ending in the stop token) with its text re-encoded by the tokenizer, if the grammar accepts it."""
        if self.retokenize is None or len(path) < 3:
            return None
        ids = self.retokenize(path[:-1])
        if not ids:
            return None
        ids = [*ids, path[-1]]
        fork = self.matcher.fork()
        for tok in ids:
            if not (0 <= tok < self.vocab_size) or not fork.accept_token(int(tok)):
                return None
        return ids if fork.is_terminated() else None

    def rollback(self, n: int = 1) -> None:
        """Undo the last `n` accepted tokens."""
        self.matcher.rollback(n)
        del self._lex[len(self._lex) - min(n, len(self._lex) - 1):]

    def mask(self, logits: torch.Tensor) -> None:
        """Set the logits of every token the grammar forbids to -inf (in place); logits shape (1, vocab)."""
        self.matcher.fill_next_token_bitmask(self.bitmask)
        self._xgr.apply_token_bitmask_inplace(logits, self.bitmask, vocab_size=self.vocab_size)

    def accept(self, token_id: int) -> bool:
        """Advance the grammar by one token; False if the token was not allowed."""
        ok = bool(self.matcher.accept_token(int(token_id)))
        if ok:
            self._lex.append(self._next_lex(self._lex[-1], int(token_id)))
        return ok

    @property
    def finished(self) -> bool:
        """True once the grammar has accepted its stop token."""
        return bool(self.matcher.is_terminated())
