"""The endpoint's engine: render the prompt, decode token by token, parse tool calls.

- Prompts are rendered by `mistral-common` (Mistral's official instruct formats, tools and tool results
  included) whenever the model has a Mistral tokenizer: the stand-in and Mistral-7B-Instruct-v0.3 use v3.
  Other models use their own Hugging Face chat template (``tokenizer.apply_chat_template``): the offline
  SmolLM2 model's ChatML template, extended by the course for tools (``<tool_call>`` blocks, parsed here).
- Decoding is a small loop over the model with a KV cache, so every step can be masked by a grammar
  (:mod:`helpers.endpoint.constrained`), a per-request seeded ``torch.Generator`` makes `random_seed` reproducible
  without touching global RNG state, and text can be streamed as it is produced.
- `[TOOL_CALLS]` output is parsed into tool calls with 9-character alphanumeric ids, as the API returns.
- `session` is one request's decoder (sampling, grammar, budget, stops, streaming) without the model call:
  `generate` steps it alone; the worker steps many sessions in one batch (:mod:`helpers.endpoint.batching`).

The engine is not thread-safe: the server drives it from one worker thread.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import random
import re
import time
from collections.abc import Callable
from typing import Any

import torch

from .constrained import Bounds, Constraint, GrammarCache, bound_schema, json_value_ebnf, tool_calls_schema
from .prompts import (
    Completion,
    Prompt,
    PromptError,
    SamplingParams,
    _strict_json,
    find_mistral_tokenizer,
    keep_calls,
    normalize_messages,
    parse_call_payload,
    parse_tagged_calls,
    sample_token,
    token_logprobs_entry,
)
from .rules import check_conversation, mistral_layout

log = logging.getLogger(__name__)


class ChatEngine:
    """A loaded model + its prompt renderer + a token-by-token sampler with optional grammar constraints."""

    def __init__(self, loaded: Any, bounds: Bounds | None = None) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.hf_tokenizer = loaded.tokenizer
        self.name = str(loaded.name)
        self.device = torch.device(getattr(loaded, "device", "cpu") if loaded.device != "cuda" else "cuda")
        self.mistral = find_mistral_tokenizer(loaded)
        self.bounds = bounds or Bounds.for_model(getattr(loaded, "is_standin", False),
                                                 tiny=getattr(loaded, "is_smollm", False))
        if self.mistral is not None:
            raw = self.mistral.instruct_tokenizer.tokenizer
            self.eos_id = raw.eos_id
            self.renderer = f"mistral-common {raw.version.value if hasattr(raw.version, 'value') else raw.version}"
            try:
                self.tool_calls_id: int | None = raw.get_special_token("[TOOL_CALLS]")
            except Exception:
                self.tool_calls_id = None
        else:
            if not getattr(self.hf_tokenizer, "chat_template", None):
                raise PromptError(f"{self.name} has neither a Mistral tokenizer nor a chat template; "
                                  "the local endpoint cannot render prompts for it.")
            self.eos_id = self.hf_tokenizer.eos_token_id
            self.renderer = "Hugging Face chat template"
            tid = self.hf_tokenizer.convert_tokens_to_ids("[TOOL_CALLS]")
            self.tool_calls_id = tid if isinstance(tid, int) and tid != self.hf_tokenizer.unk_token_id else None
        self.vocab_size = int(self.model.config.get_text_config().vocab_size)
        self.context_length = int(getattr(loaded, "context_length", 0) or
                                  getattr(self.model.config.get_text_config(), "max_position_embeddings", 0) or 4096)
        # transformers renamed forward(past_key_values=) to forward(cache=) in 5.x; use whichever this one has
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        # only the last position's logits are read: as generate() does, skip projecting every other prompt token
        # onto the vocabulary (SmolLM2, a 43-token prompt after a cached prefix: 116 → 104 ms on this CPU)
        self._last_only = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        self.grammars = GrammarCache(self.hf_tokenizer, self.vocab_size, [self.eos_id])

    # ---------------------------------------------------------------- prompts
    def render(self, messages: list[dict], *, tools: list[dict] | None = None, tool_choice: Any = "auto",
               response_format: dict | None = None, parallel_tool_calls: bool | None = None) -> Prompt:
        """Turn an API request's messages/tools/format into prompt token ids and an output mode.

        `parallel_tool_calls` (the API's default: True) lets one answer hold several calls; False allows one."""
        msgs = check_conversation(normalize_messages(messages))  # the order La Plateforme accepts (rules.py)
        rf = (response_format or {}).get("type", "text")
        schema = None
        if rf == "json_schema":
            js = (response_format or {}).get("json_schema") or {}
            schema = js.get("schema") or js.get("schema_")
            if not isinstance(schema, dict):
                raise PromptError("response_format.json_schema.schema must be a JSON schema object")
            note = "Answer with a JSON object that follows this JSON schema:\n" + json.dumps(schema)
            msgs = self._add_system_note(msgs, note)
        elif rf == "json_object":
            msgs = self._add_system_note(msgs, "Answer with a JSON object only.")
        elif rf not in ("text", None):
            raise PromptError(f"response_format.type must be text, json_object or json_schema, not {rf!r}")

        tools = list(tools or []) or None
        mode = {"json_object": "json_object", "json_schema": "json_schema"}.get(rf, "text")
        if tools:
            choice = tool_choice if tool_choice is not None else "auto"
            if isinstance(choice, dict):
                name = (choice.get("function") or {}).get("name")
                picked = [t for t in tools if t["function"]["name"] == name]
                if not picked:
                    raise PromptError(f"tool_choice names function {name!r}, which is not among the tools given")
                mode, forced = "tools_forced", picked
            elif choice in ("any", "required"):
                mode, forced = "tools_forced", tools
            elif choice == "none":
                mode, forced = ("tools_none" if mode == "text" else mode), None
            elif choice == "auto":
                mode = "tools_auto" if mode == "text" else mode
                forced = tools
            else:
                raise PromptError(f"tool_choice must be auto, none, any, required or a named function, not {choice!r}")
        else:
            forced = None
        ids = self._encode(msgs, tools)
        last = msgs[-1]
        prefix = (last.get("content") or "") if last["role"] == "assistant" and last.get("prefix") else ""
        prompt = Prompt(ids=ids, tools=forced, mode=mode, schema=schema, prefix=prefix,
                        parallel=parallel_tool_calls is not False)
        try:  # compile (or fetch from the cache) now, so a schema xgrammar cannot take is the caller's 400
            prompt.grammar = self._compile(prompt)
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            detail = re.sub(r"^\[[\d:]+\] \S+: ", "", str(exc).strip().splitlines()[-1] if str(exc).strip() else "")
            raise PromptError(f"cannot build a grammar from this JSON schema: {detail or type(exc).__name__}") from exc
        return prompt

    @staticmethod
    def _add_system_note(msgs: list[dict], note: str) -> list[dict]:
        msgs = [dict(m) for m in msgs]
        for m in msgs:
            if m["role"] == "system":
                m["content"] = (m["content"] + "\n\n" + note).strip()
                return msgs
        return [{"role": "system", "content": note}, *msgs]

    def _encode(self, msgs: list[dict], tools: list[dict] | None) -> list[int]:
        if self.mistral is not None:
            from mistral_common.exceptions import MistralCommonException
            from mistral_common.protocol.instruct.request import ChatCompletionRequest

            try:
                req = ChatCompletionRequest(model=self.name, messages=msgs, tools=[
                    {"type": "function", "function": {
                        "name": t["function"]["name"],
                        "description": t["function"].get("description") or "",
                        "parameters": t["function"].get("parameters") or {"type": "object", "properties": {}}}}
                    for t in tools] if tools else None)
                return list(self.mistral.encode_chat_completion(req).tokens)
            except MistralCommonException as exc:
                raise PromptError(str(exc)) from exc
            except ValueError as exc:  # pydantic validation inside mistral-common
                raise PromptError(str(exc).split("\nFor further information")[0]) from exc
        hf_msgs = []
        for m in mistral_layout(msgs):  # system messages where Mistral's format puts them, not the template's rule
            m = dict(m)
            for call in m.get("tool_calls") or []:
                try:
                    call["function"]["arguments"] = json.loads(call["function"]["arguments"])
                except (TypeError, ValueError):
                    pass
            hf_msgs.append({k: v for k, v in m.items() if v is not None})
        # Mistral's `prefix`: a last assistant message the answer must continue (not a new turn)
        prefix = bool(hf_msgs and hf_msgs[-1]["role"] == "assistant" and hf_msgs[-1].pop("prefix", False))
        for m in hf_msgs:
            m.pop("prefix", None)
        try:
            text = self.hf_tokenizer.apply_chat_template(hf_msgs, tools=tools, tokenize=False,
                                                         add_generation_prompt=not prefix,
                                                         continue_final_message=prefix)
        except Exception as exc:  # jinja's "roles must alternate" and friends
            raise PromptError(f"chat template refused the conversation: {exc}") from exc
        return list(self.hf_tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        """Token ids → text, special tokens dropped."""
        if self.mistral is not None:
            from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy

            return self.mistral.instruct_tokenizer.tokenizer.decode(ids, special_token_policy=SpecialTokenPolicy.IGNORE)
        return self.hf_tokenizer.decode(ids, skip_special_tokens=True)

    # ---------------------------------------------------------------- constraints
    def _compile(self, prompt: Prompt) -> Any:
        """The compiled grammar this prompt's mode demands (None for free text); cached by schema."""
        if prompt.mode in ("tools_forced", "tools_auto") and prompt.tools:
            schema = tool_calls_schema(prompt.tools, self.bounds,
                                       max_calls=self.bounds.max_items if prompt.parallel else 1)
            return self.grammars.json_schema(schema, leading_space=self.tool_calls_id is not None)
        if prompt.mode == "json_schema":
            return self.grammars.json_schema(bound_schema(prompt.schema, self.bounds))
        if prompt.mode == "json_object":
            return self.grammars.ebnf(json_value_ebnf(self.bounds))
        return None

    def constraint_for(self, prompt: Prompt) -> Constraint | None:
        """A fresh grammar matcher for this prompt (None for free text)."""
        compiled = prompt.grammar if prompt.grammar is not None else self._compile(prompt)
        return None if compiled is None else self.grammars.matcher(compiled)

    # ---------------------------------------------------------------- decoding
    @torch.inference_mode()
    def generate(self, prompt: Prompt, params: SamplingParams, *, on_text: Callable[[str], None] | None = None,
                 cancelled: Callable[[], bool] | None = None) -> Completion:
        """Sample up to `max_tokens` tokens for a rendered prompt, honouring its mode; stream text via `on_text`.

        This runs the request alone, with its own KV cache; the server's worker batches concurrent requests
        (:mod:`helpers.endpoint.batching`) through the same `session`, so both choose tokens the same way."""
        past, reused = self._reuse_prefix(prompt.ids)
        steps = self.session(prompt, params, reused=reused, on_text=on_text, cancelled=cancelled)
        try:
            feed = next(steps)
            while True:
                feed = steps.send(self.forward(past, [feed]))
        except StopIteration as done:
            gen: Completion = done.value
        self._keep_prefix(past, list(prompt.ids) + gen.ids)
        return gen

    def forward(self, past: Any, feeds: list[list[int]], **kw: Any) -> torch.Tensor:
        """One model call: feed each row its token ids, extend the cache, return last-position logits (rows, vocab)."""
        x = torch.tensor(feeds, device=self.device)
        logits = self.model(input_ids=x, **{self._cache_kw: past}, use_cache=True, **self._last_only, **kw).logits
        logits = logits[:, -1, :].float()
        return logits.cpu() if logits.device.type != "cpu" else logits

    def session(self, prompt: Prompt, params: SamplingParams, *, reused: int = 0,
                on_text: Callable[[str], None] | None = None, cancelled: Callable[[], bool] | None = None):
        """One request's decoding, as a generator: it yields the token ids to feed the model next (first the prompt
        past the `reused` cached tokens, then one token at a time), is sent back that step's logits (1, vocab), and
        returns the Completion. It owns everything per request (sampling and seed, grammar state and budget, stops,
        streaming, cancellation) and nothing of the model or its cache, so a caller may step it alone or in a batch."""
        t0 = time.perf_counter()
        seed = params.seed if params.seed is not None else int.from_bytes(os.urandom(6), "little")
        gen = torch.Generator(device="cpu").manual_seed(int(seed) % 2**63)
        id_rng = random.Random(seed)
        constraint = self.constraint_for(prompt)
        trigger = self.tool_calls_id if prompt.mode in ("tools_forced", "tools_auto") else None
        # tools_auto: free text until the model itself emits [TOOL_CALLS], then the call is constrained.
        # tools_forced: the first token is [TOOL_CALLS] (when the tokenizer has it) and the call is constrained.
        active = prompt.mode in ("json_object", "json_schema") or (prompt.mode == "tools_forced" and trigger is None)
        force_first = trigger if prompt.mode == "tools_forced" else None
        banned = [self.tool_calls_id] if (self.tool_calls_id is not None and prompt.mode in
                                          ("text", "tools_none", "json_object", "json_schema")) else []

        if prompt.prefix and on_text is not None:  # the API's answer starts with the prefix, streamed or not
            on_text(prompt.prefix)
        out_ids: list[int] = []
        content_ids: list[int] = []
        call_ids: list[int] = []
        in_call = active and prompt.mode == "tools_forced"
        finish = "length"
        sent = ""
        stops = [s for s in params.stop if s]
        hold = max((len(s) for s in stops), default=1) - 1
        x = list(prompt.ids[reused:])
        budget: dict = {}  # budget-aware decoding's state (see _within_budget)
        token_logprobs: list[dict] = []
        call_need: int | None = None  # tools_auto: tokens a whole call needs, so [TOOL_CALLS] comes only if it fits
        for step in range(params.max_tokens):
            remaining = params.max_tokens - step
            if cancelled is not None and cancelled():
                finish = "cancelled"
                break
            logits = yield x
            # the model's own log-probabilities, before any mask, ban or temperature touches the logits
            logprobs = torch.log_softmax(logits[0].float(), dim=-1) if params.logprobs is not None else None
            if force_first is not None and step == 0:
                tok = force_first
            else:
                if banned:
                    logits[:, banned] = float("-inf")
                if step < params.min_tokens and not active:
                    logits[:, self.eos_id] = float("-inf")
                if trigger is not None and not active and constraint is not None:
                    if call_need is None:
                        call_need = len(constraint.plan_to_finish() or [])
                    if remaining - 1 < call_need:  # a call started now could not be finished: no call
                        logits[:, trigger] = float("-inf")
                if active:
                    constraint.mask(logits)
                tok = self._sample(logits, params, gen, out_ids)
                if active:
                    tok = self._within_budget(constraint, tok, remaining, budget, step)
            out_ids.append(tok)
            if logprobs is not None:
                token_logprobs.append(token_logprobs_entry(tok, logprobs, params.logprobs, self._token_text))
            x = [tok]
            if tok == trigger and not active and constraint is not None:
                active = in_call = True
                continue
            if active:
                if not constraint.accept(tok):  # cannot happen with a correct mask; stop rather than emit junk
                    log.error("grammar rejected token %d; stopping", tok)
                    finish = "stop"
                    break
                if tok != self.eos_id:
                    (call_ids if in_call else content_ids).append(tok)
                if constraint.finished:
                    finish = "stop"
                    break
                if in_call:
                    continue
            elif tok == self.eos_id:
                finish = "stop"
                break
            else:
                content_ids.append(tok)
            if on_text is not None or stops:
                text = self.decode(content_ids)
                cut = min((text.find(s) for s in stops if s in text), default=-1)
                if cut >= 0:
                    text, finish = text[:cut], "stop"
                if on_text is not None:
                    safe = text if cut >= 0 else text[: max(len(sent), len(text) - hold)]
                    if safe.endswith("\ufffd"):  # half of a multi-byte character
                        safe = safe[:-1]
                    if len(safe) > len(sent) and safe.startswith(sent):
                        on_text(safe[len(sent):])
                        sent = safe
                if cut >= 0:
                    content_ids = self._trim_to(content_ids, text)
                    break
        content = self.decode(content_ids).rstrip("\ufffd" if finish == "length" else "")  # no half character
        if on_text is not None and len(content) > len(sent) and content.startswith(sent):
            on_text(content[len(sent):])
        if prompt.mode in ("json_object", "json_schema") and finish == "stop":
            content = _strict_json(content)
        content = prompt.prefix + content
        tool_calls = None
        if prompt.mode == "tools_auto" and trigger is None and not in_call:
            # no [TOOL_CALLS] token (ChatML models): the template asks for <tool_call>{json}</tool_call>
            tool_calls, rest = self._parse_tagged_calls(content, prompt.tools or [], id_rng)
            tool_calls = keep_calls(tool_calls, prompt)
            content = rest if tool_calls else content
            if tool_calls and finish == "stop":
                finish = "tool_calls"
        if in_call:
            tool_calls = self._parse_calls(call_ids, id_rng)
            if tool_calls is None:  # unfinished (hit max_tokens): report the raw text, as the API would
                content = content + self.decode(call_ids)
            elif finish == "stop":
                finish = "tool_calls"
        return Completion(ids=out_ids, content=content, tool_calls=tool_calls, finish_reason=finish,
                          prompt_tokens=len(prompt.ids), seconds=time.perf_counter() - t0,
                          cached_tokens=reused, logprobs=token_logprobs if params.logprobs is not None else None)

    # Prefix caching: a request sharing a long start with the previous one (system prompt, few-shot examples, a
    # conversation) reuses its KV cache, cut back to the common prefix; greedy answers are unchanged (tested).
    PREFIX_MIN, PREFIX_MAX = 16, 8192

    def _reuse_prefix(self, ids: list[int]):
        """(cache, n): a KV cache already holding `ids[:n]` from the previous request, or a fresh one and 0."""
        from transformers import DynamicCache

        kept = getattr(self, "_prefix", None)
        self._prefix = None  # the cache is handed to this request; a failure must not leave it half-updated
        if kept is not None:
            past, old = kept
            n = 0
            while n < min(len(old), len(ids) - 1) and old[n] == ids[n]:  # at least one new token must be fed
                n += 1
            if n >= self.PREFIX_MIN:
                if past.get_seq_length() > n:  # transformers 5: crop(-k) removes the last k tokens
                    past.crop(n - past.get_seq_length())
                return past, n
        return DynamicCache(), 0

    def _keep_prefix(self, past, ids: list[int]) -> None:
        seen = past.get_seq_length()
        if seen <= self.PREFIX_MAX:
            self._prefix = (past, ids[:seen])

    @staticmethod
    def _within_budget(constraint: Constraint, tok: int, remaining: int, budget: dict, step: int) -> int:
        """Budget-aware decoding: keep the sampled token only if the structure can still be finished in time.

        `budget["plan"]` is a shortest-looking way to finish from the current state (`Constraint.plan_to_finish`).
        A sampled token is kept when the plan from the state after it fits in what is left of max_tokens;
        otherwise the plan's first token is taken instead, and with no room left for detours the plan is followed
        to the end. Holding this at every step means a forced tool call or a JSON schema answer always completes.
        Far from the end of the budget the check runs only every 8th step (a token adds a few tokens to the plan
        at most). Returns the token to emit; the grammar state is left as it was.
        """
        if constraint.closing is None:
            return tok
        plan, need = budget.get("plan"), budget.get("need")
        if plan and remaining <= len(plan):  # no room for a detour: follow the plan
            budget["plan"], budget["need"] = plan[1:], len(plan) - 1
            return plan[0]
        if plan and tok == plan[0]:
            budget["plan"], budget["need"] = plan[1:], len(plan) - 1
            return tok
        if need is not None and remaining > need + 32 and step % 8:
            budget["plan"] = None
            return tok
        if not constraint.accept(tok):
            return tok  # the caller reports the rejected token
        after = [] if constraint.finished else constraint.plan_to_finish(cap=remaining - 1)
        constraint.rollback(1)
        if after is not None and len(after) <= remaining - 1:
            budget["plan"], budget["need"] = after, len(after)
            return tok
        plan = plan or constraint.plan_to_finish(cap=remaining)
        if not plan:
            return tok
        budget["plan"], budget["need"] = plan[1:], len(plan) - 1
        return plan[0]

    def min_new_tokens(self, prompt: Prompt) -> int | None:
        """The fewest new tokens a complete answer needs when the request demands structure (a forced tool call,
        a JSON object or schema); None when free text may answer. The endpoint refuses a smaller max_tokens (400)."""
        if prompt.mode not in ("tools_forced", "json_object", "json_schema"):
            return None
        constraint = self.constraint_for(prompt)
        plan = constraint.plan_to_finish() if constraint is not None else None
        if plan is None:
            return None
        return len(plan) + (1 if prompt.mode == "tools_forced" and self.tool_calls_id is not None else 0)

    def _token_text(self, tok: int) -> str:
        """A token's text; a special one (end of sequence…) by its name, as the tokenizer spells it."""
        return self.decode([tok]) or str(self.hf_tokenizer.convert_ids_to_tokens(int(tok)) or "")

    def _trim_to(self, ids: list[int], text: str) -> list[int]:
        while ids and len(self.decode(ids)) > len(text):
            ids = ids[:-1]
        return ids

    _sample = staticmethod(sample_token)
    _parse_tagged_calls = staticmethod(parse_tagged_calls)  # (tests call it by this name)

    def _parse_calls(self, call_ids: list[int], rng: random.Random) -> list[dict] | None:
        return parse_call_payload(self.decode(call_ids), rng)
