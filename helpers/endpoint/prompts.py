"""Prompts for the endpoint: the request types, message normalisation, and finding a model's Mistral tokenizer.

Messages are normalised to the fields each role has in Mistral's schema; `mistral-common` renders them for models
with a Mistral tokenizer (the stand-in, Mistral-7B-Instruct-v0.3), each model's own chat template otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import string
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_ID_ALPHABET = string.ascii_letters + string.digits


class PromptError(ValueError):
    """The conversation cannot be rendered (bad role order, bad tool message…); maps to HTTP 400."""


@dataclass
class SamplingParams:
    """What one request asks of the sampler."""

    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    min_tokens: int = 0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    logprobs: int | None = None  # None: off; k: report each token's log-probability and its k likeliest alternatives
    presence_penalty: float = 0.0  # the API's penalties on tokens already generated (rules.apply_penalties)
    frequency_penalty: float = 0.0


@dataclass
class Prompt:
    """A rendered prompt and how to read the model's answer to it."""

    ids: list[int]
    tools: list[dict] | None = None
    mode: str = "text"  # text | tools_auto | tools_forced | tools_none | json_object | json_schema
    schema: dict | None = None  # json_schema mode: the user's schema (unbounded, for reference)
    grammar: Any = None  # the compiled grammar for this mode (None: free text)
    prefix: str = ""  # Mistral's `prefix`: text the answer must start with (returned as part of the content)
    parallel: bool = True  # parallel_tool_calls: several calls in one answer (False: at most one)


@dataclass
class Completion:
    """What came out: generated ids, content text, parsed tool calls and why it stopped."""

    ids: list[int]
    content: str
    tool_calls: list[dict] | None
    finish_reason: str  # stop | length | tool_calls
    prompt_tokens: int
    seconds: float = 0.0
    cached_tokens: int = 0  # prompt tokens whose KV cache was reused from the previous request
    logprobs: list[dict] | None = None  # per generated token, in the API's shape (when the request asked for them)


def _strict_json(text: str) -> str:
    """Re-serialise JSON whose strings hold raw control characters (legal in the grammar, not in strict JSON)."""
    try:
        json.loads(text)
        return text
    except ValueError:
        try:
            return json.dumps(json.loads(text, strict=False), ensure_ascii=False)
        except ValueError:
            return text


def new_tool_call_id(rng: random.Random | None = None) -> str:
    """A Mistral-style tool-call id: 9 alphanumeric characters."""
    rng = rng or random.Random()
    return "".join(rng.choice(_ID_ALPHABET) for _ in range(9))


# ------------------------------------------------------------------ prompt rendering
def find_mistral_tokenizer(loaded: Any):
    """The `mistral-common` tokenizer for a loaded model, or None when it has none (→ HF chat template)."""
    from mistral_common.protocol.instruct.validator import ValidationMode
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    from ..paths import tokenizer_source

    candidates: list[Callable[[], Any]] = []
    if getattr(loaded, "is_standin", False):
        candidates.append(lambda: MistralTokenizer.from_file(str(tokenizer_source()), mode=ValidationMode.serving))
    path = Path(str(loaded.path))
    if path.is_dir():
        for pattern in ("tekken.json", "tokenizer.model.v*", "*.model.v*"):
            for file in sorted(path.glob(pattern)):
                candidates.append(lambda f=file: MistralTokenizer.from_file(str(f), mode=ValidationMode.serving))
    elif "/" in str(loaded.path):
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        candidates.append(lambda: MistralTokenizer.from_hf_hub(
            str(loaded.path), local_files_only=offline, mode=ValidationMode.serving))
    if "mistral-7b-instruct-v0.3" in str(loaded.path).lower():
        data = Path(tokenizer_source())
        candidates.append(lambda: MistralTokenizer.from_file(str(data), mode=ValidationMode.serving))
    vocab = int(getattr(loaded.model.config, "vocab_size", 0) or 0)
    for make in candidates:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tok = make()
        except Exception as exc:  # no such file / offline / not a Mistral repo
            log.debug("mistral-common tokenizer candidate failed: %s", exc)
            continue
        if vocab and tok.instruct_tokenizer.tokenizer.n_words != vocab:
            log.warning("mistral-common tokenizer has %d tokens but the model %d; using the HF chat template",
                        tok.instruct_tokenizer.tokenizer.n_words, vocab)
            continue
        return tok
    return None


def _text_of(content: Any) -> str:
    """A message's text (tools.content_text joins it); chunks the endpoint cannot read (images, audio) are a 400."""
    from ..tools import content_text

    if content is not None and not isinstance(content, (str, list)):
        raise PromptError(f"message content must be a string or a list of text chunks, not {type(content).__name__}")
    for chunk in content if isinstance(content, list) else []:
        if not isinstance(chunk, str) and not (isinstance(chunk, dict) and chunk.get("type", "text") == "text"):
            raise PromptError(f"content chunk of type {chunk.get('type') if isinstance(chunk, dict) else chunk!r} "
                              "is not supported by the local endpoint (text only)")
    return content_text(content)


def normalize_messages(messages: list[dict]) -> list[dict]:
    """Keep the fields each role has in Mistral's schema, as text (the order is rules.check_conversation's)."""
    out: list[dict] = []
    for i, m in enumerate(messages):
        role = m.get("role")
        if role in ("system", "user"):
            out.append({"role": role, "content": _text_of(m.get("content"))})
        elif role == "assistant":
            msg: dict[str, Any] = {"role": "assistant", "content": _text_of(m.get("content")) or None}
            calls = []
            for c in m.get("tool_calls") or []:
                fn = c.get("function") or {}
                args = fn.get("arguments", "{}")
                calls.append({"id": c.get("id") or new_tool_call_id(), "type": "function",
                              "function": {"name": fn.get("name", ""),
                                           "arguments": args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)}})
            if calls:
                msg["tool_calls"] = calls
            if m.get("prefix"):
                msg["prefix"] = True
            out.append(msg)
        elif role == "tool":
            out.append({"role": "tool", "content": _text_of(m.get("content")),
                        "tool_call_id": m.get("tool_call_id"), "name": m.get("name")})
        else:
            raise PromptError(f"messages[{i}].role must be system, user, assistant or tool, not {role!r}")
    if not out:
        raise PromptError("messages must not be empty")
    return out


# ------------------------------------------------------------------ reading tool calls out of the answer
def parse_tagged_calls(content: str, tools: list[dict], rng: random.Random) -> tuple[list[dict] | None, str]:
    """`<tool_call>{"name": …, "arguments": {…}}</tool_call>` blocks in free text → tool calls (names checked)."""
    names = {t["function"]["name"] for t in tools}
    calls = []
    for block in re.findall(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", content, flags=re.S):
        try:
            item = json.loads(block, strict=False)
        except ValueError:
            continue
        if isinstance(item, dict) and item.get("name") in names:
            args = item.get("arguments", {})
            calls.append({"id": new_tool_call_id(rng), "type": "function", "index": len(calls),
                          "function": {"name": item["name"], "arguments": args if isinstance(args, str)
                                       else json.dumps(args, ensure_ascii=False)}})
    if not calls:
        return None, content
    return calls, content.split("<tool_call>", 1)[0].strip()


def parse_call_payload(text: str, rng: random.Random) -> list[dict] | None:
    """A `[TOOL_CALLS]` payload (`[{"name": …, "arguments": {…}}]` or one object) → tool calls; None if not one."""
    text = text.strip()
    try:  # strict=False: a raw control character inside a string is re-escaped by json.dumps below
        payload = json.loads(text, strict=False)
    except ValueError:
        return None
    if isinstance(payload, dict):
        payload = [payload]
    calls = []
    for item in payload if isinstance(payload, list) else []:
        if not isinstance(item, dict) or "name" not in item:
            return None
        args = item.get("arguments", {})
        calls.append({"id": new_tool_call_id(rng), "type": "function", "index": len(calls),
                      "function": {"name": item["name"],
                                   "arguments": args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)}})
    return calls or None


# ------------------------------------------------------------------ sampling
def apply_penalties(logits: Any, generated: list[int], presence: float, frequency: float) -> Any:
    """presence_penalty / frequency_penalty, as Mistral's API reference describes them (openapi.yaml, 2026-08-21:
    "penalizes the repetition of words based on their frequency in the generated text") in the additive form OpenAI
    and vLLM apply: each token already generated loses `presence` once plus `frequency` per time it appeared."""
    if not generated or (not presence and not frequency):
        return logits
    import torch

    ids, counts = torch.unique(torch.tensor(generated, dtype=torch.long), return_counts=True)
    logits[:, ids] -= presence + frequency * counts.to(logits.dtype)
    return logits


def sample_token(logits: Any, params: SamplingParams, gen: Any, generated: list[int] | None = None) -> int:
    """One token from logits (1, vocab): greedy at temperature ~0, else softmax with top-p, from the seeded `gen`;
    the request's presence/frequency penalties first lower the tokens already `generated`."""
    import torch

    logits = apply_penalties(logits, generated or [], params.presence_penalty, params.frequency_penalty)

    # a temperature this close to 0 is greedy; dividing by it (1e-45) would overflow the logits to inf/NaN
    if params.temperature is None or params.temperature < 1e-4:
        return int(torch.argmax(logits, dim=-1))
    probs = torch.softmax(logits / params.temperature, dim=-1)[0]
    if not bool(torch.isfinite(probs).all()):
        return int(torch.argmax(logits, dim=-1))
    if params.top_p is not None and params.top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_p, 0) - sorted_p < params.top_p
        keep[0] = True
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs, 1, generator=gen))


# ------------------------------------------------------------------ what the API adds to an answer
def token_logprobs_entry(tok: int, logprobs: Any, k: int, text_of: Callable[[int], str]) -> dict:
    """One generated token in the SDK's `ChatCompletionResponseTokenLogprobsTopK` shape: its text, UTF-8 bytes, id and
    log-probability (the model's own, before masks or temperature), and the `k` likeliest tokens at that step, most
    likely first, in the same shape."""
    import torch

    def entry(t: int) -> dict:
        text = text_of(t)
        return {"token": text, "logprob": float(logprobs[t]), "bytes": list(text.encode("utf-8")), "token_id": t}

    out = entry(int(tok))
    top = torch.topk(logprobs, min(int(k), logprobs.shape[-1])) if k else None
    out["top_logprobs"] = [entry(int(t)) for t in top.indices] if top is not None else []
    return out


def keep_calls(calls: list[dict] | None, prompt: Prompt) -> list[dict] | None:
    """Calls read from free text (no grammar held them): the first only without `parallel_tool_calls`, and none whose
    arguments break a `strict` function's schema (the API promises that strict arguments follow it)."""
    if not calls:
        return calls
    if not prompt.parallel:
        calls = calls[:1]
    strict = {t["function"]["name"]: t["function"].get("parameters") or {"type": "object"}
              for t in prompt.tools or [] if t["function"].get("strict")}
    if strict:
        import jsonschema

        def holds(call: dict) -> bool:
            name = call["function"]["name"]
            if name not in strict:
                return True
            try:
                jsonschema.validate(json.loads(call["function"]["arguments"]), strict[name])
                return True
            except (ValueError, jsonschema.ValidationError, jsonschema.SchemaError):
                return False

        calls = [c for c in calls if holds(c)]
    for i, c in enumerate(calls):
        c["index"] = i
    return calls or None
