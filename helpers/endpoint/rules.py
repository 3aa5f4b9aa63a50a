"""La Plateforme's request rules, kept apart from the model: what a conversation may contain, and what each field does.

- **Message order** is checked by `mistral-common`'s own validator (Mistral's library, serving mode), plus the rules
  where La Plateforme is reported to be stricter than that library (`API_STRICTER`, dated, with sources). A refusal
  is a 400 in the API's shape (`invalid_request_message_order`, code 3230) whose message says what to fix.
- **Layout**: a conversation the validator accepts is rendered the way Mistral's format renders it, before the served
  model's own chat template sees it (a template must not decide what a conversation may contain).
- **Fields** the API has but the local endpoint cannot honour are refused with a 400 that names the difference,
  never accepted silently; `safe_prompt` does what the API documents.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from .prompts import PromptError
from .schemas import ApiError

# ---------------------------------------------------------------- message order
# The validator version: mistral-common 1.13.1's v13 rules (the tokenizer generation of La Plateforme's current models;
# any non-empty tool-call id). Its serving mode refuses e.g. [user, tool], a conversation ending with an assistant
# turn that is not a prefix, and a system message right after an assistant turn ("Unexpected role 'system' after
# role 'assistant'": the API answered exactly this in public reports, swarmauri-sdk issues #162 and #276, 2024-08).
VALIDATOR_VERSION = "v13"

# Where the API is reported to refuse what mistral-common's validator accepts. Checked 2026-12-06; each entry:
# (rule, the API's message, sources).
API_STRICTER: dict[str, tuple[str, str]] = {
    "user_after_tool": (
        "Unexpected role 'user' after role 'tool'",
        "La Plateforme's 400 body {type: invalid_request_message_order, code: 3230} as quoted in "
        "datapizza-labs/datapizza-ai#98 (2025-12-04), avante-corp/avante.nvim#2562 (2025-08-01), "
        "NousResearch/hermes-agent#20154 (2026-05-05), zed-industries/zed#37021 (still seen 2026-04-29); "
        "one report (aaif-goose/goose#5998, 2026-05-02) could no longer reproduce it"),
    "assistant_without_content_or_calls": (
        "Assistant message must have either content or tool_calls",
        "issue 30's probes of the API (2026-12); mistral-common's own v1-v3 validators refuse it with this message, "
        "its v5+ validators dropped the check along with the content-and-calls one"),
}
FIXES = {
    "user_after_tool": "answer the tool result with an assistant message before the next user message",
    "assistant_without_content_or_calls": "give the assistant message content or tool_calls, or drop it",
    "tool": "a tool message must follow an assistant message whose tool_calls it answers (same tool_call_id)",
    "last": "end with a user or tool message, or mark a final assistant message prefix=True to continue it",
    "system": "put system messages before the assistant turns, or fold the instruction into the next user message",
}


class MessageOrderError(PromptError):
    """A conversation La Plateforme refuses (400, type invalid_request_message_order)."""

    type_ = "invalid_request_message_order"
    code = "3230"


def _validator():
    from mistral_common.protocol.instruct.validator import ValidationMode, get_validator
    from mistral_common.tokens.tokenizers.base import TokenizerVersion

    return get_validator(TokenizerVersion(VALIDATOR_VERSION), ValidationMode.serving)


def _fix_for(message: str) -> str:
    if "'tool'" in message or "tool call" in message.lower() or "function calls" in message:
        return FIXES["tool"]
    if "last role" in message:
        return FIXES["last"]
    if "'system'" in message:
        return FIXES["system"]
    return "check the order of the roles against Mistral's chat format"


def check_conversation(msgs: list[dict]) -> list[dict]:
    """Refuse a conversation as La Plateforme does: mistral-common's validator, then the API's stricter rules.

    `msgs` are normalised messages (prompts.normalize_messages): text content, tool calls with ids."""
    from mistral_common.exceptions import MistralCommonException
    from mistral_common.protocol.instruct.request import ChatCompletionRequest

    try:
        request = ChatCompletionRequest(messages=[{k: v for k, v in m.items() if v is not None} for m in msgs])
        _validator().validate_messages(request.messages)
    except MistralCommonException as exc:
        raise MessageOrderError(f"{exc} ({_fix_for(str(exc))})") from exc
    except ValueError as exc:  # pydantic, inside mistral-common
        raise MessageOrderError(str(exc).split("\nFor further information")[0]) from exc
    for i, (before, m) in enumerate(zip(msgs, msgs[1:], strict=False), start=1):
        if before["role"] == "tool" and m["role"] == "user":
            rule = "user_after_tool"
            raise MessageOrderError(f"{API_STRICTER[rule][0]} (messages[{i}]): {FIXES[rule]}")
    for i, m in enumerate(msgs):
        if m["role"] == "assistant" and not m.get("content") and not m.get("tool_calls"):
            rule = "assistant_without_content_or_calls"
            raise MessageOrderError(f"{API_STRICTER[rule][0]} (messages[{i}]): {FIXES[rule]}")
    return msgs


def mistral_layout(msgs: list[dict]) -> list[dict]:
    """The conversation laid out as Mistral's format lays it out, for a model rendered by its own chat template.

    System messages at the start stay one system turn (joined by a blank line). A system message after the
    conversation has begun goes where mistral-common's v3 format (the stand-in's) puts every system prompt: before
    the text of the last user message, joined by a blank line. So SmolLM2's ChatML template, which allows one system
    turn first, renders every conversation Mistral's validator accepts."""
    lead = 0
    while lead < len(msgs) and msgs[lead]["role"] == "system":
        lead += 1
    head = [m["content"] for m in msgs[:lead]]
    late = [m["content"] for m in msgs[lead:] if m["role"] == "system"]
    rest = [dict(m) for m in msgs[lead:] if m["role"] != "system"]
    users = [i for i, m in enumerate(rest) if m["role"] == "user"]
    if late and users:
        last = rest[users[-1]]
        last["content"] = "\n\n".join([*late, last.get("content") or ""])
    elif late:
        head += late
    return ([{"role": "system", "content": "\n\n".join(head)}] if head else []) + rest


# ---------------------------------------------------------------- fields
# safe_prompt: "Toggling the safe prompt will prepend your messages with the following system prompt" (Mistral's
# guardrailing docs, platform-docs-public public/resources/deprecated/guardrailing/safe_prompt.md, synced 2026-08-21;
# the docs call the flag deprecated in favour of guardrails, which the local endpoint refuses)
SAFE_PROMPT = ("Always assist with care, respect, and truth. Respond with utmost utility yet securely. Avoid harmful, "
               "unethical, prejudiced, or negative content. Ensure replies promote fairness and positivity.")


def with_safe_prompt(messages: list[dict], safe_prompt: bool | None) -> list[dict]:
    """`safe_prompt=True`: the documented safety system prompt, prepended to the messages, as the API does."""
    return [{"role": "system", "content": SAFE_PROMPT}, *messages] if safe_prompt else messages


def _refuse(field: str, why: str) -> ApiError:
    return ApiError(400, f"{field}: {why}", code="3001")


def refuse_unservable_chat(body: Any) -> None:
    """A 400 naming the field for what the local endpoint cannot do as the API does (rather than ignore it)."""
    if body.prediction and (body.prediction.get("content") or "") != "":
        raise _refuse("prediction", "predicted outputs are not served by the local endpoint (it would decode the "
                                    "whole answer anyway): leave prediction out")
    if body.prompt_mode is not None:
        raise _refuse("prompt_mode", f"{body.prompt_mode!r} asks a reasoning model for its reasoning prompt; the "
                                     "served model has none: leave prompt_mode out")
    for field in ("repetition_penalty", "top_k", "top_prompt_logprobs", "service_tier"):
        if getattr(body, field) is not None:
            raise _refuse(field, "SDK 3.7 has this field but Mistral's published API schema (2026-08-21) does not, "
                                 "and the local endpoint does not serve it: leave it out (presence_penalty and "
                                 "frequency_penalty are served)")


def refuse_unservable_embedding(body: Any, served: str) -> None:
    """output_dimension / output_dtype: codestral-embed's options on La Plateforme; the served model has neither."""
    if body.output_dimension is not None:
        raise _refuse("output_dimension", f"the served embedding model ({served}) has one fixed dimension (GET "
                                          "/v1/models gives it); La Plateforme takes output_dimension only for "
                                          "codestral-embed: leave it out")
    if body.output_dtype not in (None, "float"):
        raise _refuse("output_dtype", f"{body.output_dtype!r} is codestral-embed's quantised output on La "
                                      "Plateforme; the local endpoint returns float vectors: leave it out or send "
                                      "'float'")


def encode_vector(vector: list[float], encoding_format: str | None) -> list[float] | str:
    """An embedding as the request asks: floats, or `base64` (little-endian float32 bytes, as OpenAI's API and
    OpenAI-compatible clients read it)."""
    if encoding_format != "base64":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


# ---------------------------------------------------------------- streaming equals non-streaming
class TaggedCallFilter:
    """Streamed text for a model that writes its tool calls as `<tool_call>{…}</tool_call>` text (SmolLM2's ChatML
    template): text that may be the start of a call is held back, so a call the non-streamed answer returns as
    `tool_calls` never reaches the stream as text. `finish` sends what the final content still adds."""

    TAG = "<tool_call>"

    def __init__(self) -> None:
        self.buffer = ""
        self.sent = ""

    def feed(self, text: str) -> str:
        """The part of the text so far that is surely content (never markup, trailing spaces held), not yet sent."""
        self.buffer += text
        cut = self.buffer.find(self.TAG)
        if cut < 0:
            cut = len(self.buffer)
            for k in range(min(len(self.TAG) - 1, len(self.buffer)), 0, -1):  # a tag begun at the very end
                if self.TAG.startswith(self.buffer[-k:]):
                    cut -= k
                    break
        safe = self.buffer[:cut].rstrip()
        if len(safe) <= len(self.sent) or not safe.startswith(self.sent):
            return ""
        out, self.sent = safe[len(self.sent):], safe
        return out

    def finish(self, content: str) -> str:
        """What the final content adds to what was streamed (the content is what the non-streamed answer holds)."""
        return content[len(self.sent):] if content.startswith(self.sent) else ""
