"""What the endpoint accepts and answers: the API names it serves, request models, body checks, error bodies.

Every check that keeps a bad request from becoming a 500 lives here (finite numbers, well-formed strings,
`tool_choice` and `response_format` shapes, nesting and schema-size limits), so the app can trust what it gets.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

log = logging.getLogger("helpers.endpoint")

# ---------------------------------------------------------------- the names the endpoint answers to
# API model names (La Plateforme aliases) served by the local chat model. One list, used everywhere.
CHAT_ALIASES: tuple[str, ...] = (
    "mistral-small-latest", "mistral-medium-latest", "mistral-large-latest",
    "mistral-tiny", "mistral-small", "mistral-medium", "mistral-large", "mistral-medium-3-5", "mistral-medium-3",
    "ministral-3b-latest", "ministral-8b-latest", "ministral-14b-latest",
    "open-mistral-7b", "open-mistral-nemo", "open-mixtral-8x7b", "open-mixtral-8x22b",
    "magistral-small-latest", "magistral-medium-latest", "codestral-latest", "devstral-small-latest",
    "pixtral-12b-latest",
)
EMBED_ALIASES: tuple[str, ...] = ("mistral-embed", "mistral-embed-latest", "codestral-embed")
# dated snapshots of the same families, e.g. mistral-small-2506, ministral-8b-2410
_DATED = re.compile(r"^(mistral-(small|medium|large)|ministral-\d+b|magistral-(small|medium)|"
                    r"codestral|devstral-small|open-mistral-nemo)-\d{4}$")

# mistral-embed's per-request limits (EMBED_MAX_INPUTS, EMBED_MAX_TOKENS) live in helpers.rag, which batches
# within them; the endpoint enforces the same numbers so code that works here works there.
API_KEY_ENV = "COURSE_SERVER_API_KEY"  # where the CLI reads the bearer token (kept out of `ps` and shell history)
DEFAULT_MAX_BODY = 4 * 1024 * 1024
STREAM_INTERVAL_S = 0.015  # streamed text is sent at most this often (batched in between)
DEFAULT_MAX_TOKENS = 512  # when a request gives no max_tokens (a random model never says </s> on its own)
MAX_JSON_DEPTH = 64  # a request body nested deeper than this is refused (400) before anything parses it further
MAX_SCHEMA_NODES = 5_000  # objects + arrays + values across all tool / response_format schemas of one request
DRAIN_MAX_BYTES = 64 * 1024 * 1024  # an oversized body is read and discarded up to this much, then 413 (lingering close)
DRAIN_MAX_SECONDS = 10.0


# ---------------------------------------------------------------- errors in the API's shape
class ApiError(Exception):
    """An error the endpoint answers with, in Mistral's JSON shape."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.headers = status, message, type_, code, headers or {}


def error_body(message: Any, type_: str, code: str | None = None, **extra: Any) -> dict:
    """The body La Plateforme returns on errors."""
    return {"object": "error", "message": message, "type": type_, "param": None, "code": code, **extra}


def _safe(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become strings (json.dumps would write NaN, which is not JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_safe(v) for v in value]
    return value


def safe_dumps(body: Any) -> bytes:
    """Serialise any response body: ASCII escapes (a lone surrogate becomes \\ud800, never an encode error)."""
    return json.dumps(_safe(body), ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _json_bytes(status: int, body: dict, headers: dict[str, str] | None = None) -> tuple[int, list, bytes]:
    raw = safe_dumps(body)
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    hdrs += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    return status, hdrs, raw


# ---------------------------------------------------------------- request bodies
class BodyError(ValueError):
    """A request body that must be refused before FastAPI parses it (non-finite number, bad string, too deep)."""


def _reject_constant(name: str) -> float:
    raise BodyError(f"{name} is not a JSON number: send finite numbers only")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BodyError(f"the number {text[:40]} is out of range: send finite numbers only")
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_body(raw: bytes) -> None:
    """Refuse what no route can use: non-finite numbers, lone UTF-16 surrogates, nesting past MAX_JSON_DEPTH.

    A body that is not JSON at all passes through: FastAPI answers it with its own 422.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("the request body is not valid UTF-8") from None
    # nesting depth, counted on the brackets outside strings so a 100,000-deep body never reaches a recursive parser
    depth = deepest = 0
    for ch in re.sub(r"[^\[\]{}]+", "", re.sub(r'"(?:[^"\\]|\\.)*"', "", text)):
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                raise BodyError(f"the request body is nested more than {MAX_JSON_DEPTH} levels deep "
                                f"(this server's limit is {MAX_JSON_DEPTH})")
        elif ch in "]}":
            depth -= 1
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except BodyError:
        raise
    except ValueError as exc:
        if "digits" in str(exc):  # int('9' * 5000): Python's limit on integer string conversion
            raise BodyError("a number in the request body has too many digits") from None
        return  # not JSON: FastAPI's 422 says so
    stack: list[tuple[Any, str]] = [(value, "body")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                raise BodyError(f"{where} holds a lone UTF-16 surrogate (e.g. \\ud800): send valid Unicode text")
        elif isinstance(node, dict):
            for k, v in node.items():
                if _SURROGATE.search(k):
                    raise BodyError(f"a key in {where} holds a lone UTF-16 surrogate: send valid Unicode text")
                stack.append((v, f"{where}.{k}"[:120]))
        elif isinstance(node, list):
            stack.extend((v, f"{where}[{i}]"[:120]) for i, v in enumerate(node))


def count_nodes(value: Any) -> int:
    """How many JSON values (objects, arrays, scalars) `value` holds."""
    n, stack = 0, [value]
    while stack:
        node = stack.pop()
        n += 1
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return n


# published ranges (Mistral's OpenAPI file, platform-docs-public openapi.yaml, synced 2026-08-21): ChatCompletionRequest
# temperature maximum 1.5; a function name as mistral-common's validator and the API require it
MAX_TEMPERATURE = 1.5
FUNCTION_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class _Strict(BaseModel):
    """A request object that refuses fields the API's schema does not have: La Plateforme answers them with 422
    `extra_forbidden` (its published OpenAPI file sets additionalProperties: false on every request object)."""

    model_config = ConfigDict(extra="forbid")


class FunctionCallSpec(_Strict):
    name: str
    arguments: dict[str, Any] | str = "{}"


class ToolCallSpec(_Strict):
    id: str | None = None
    type: Literal["function"] | None = "function"
    index: int | None = None
    function: FunctionCallSpec


# one model per role, as the API's schema has them: a field another role has (`name` on a user message,
# `reasoning_content` on an assistant one) is a 422 extra_forbidden at ["body", "messages", i, role, field]
class SystemMessage(_Strict):
    role: Literal["system"]
    content: str | list[Any]


class UserMessage(_Strict):
    role: Literal["user"]
    content: str | list[Any] | None = None


class AssistantMessage(_Strict):
    role: Literal["assistant"]
    content: str | list[Any] | None = None
    tool_calls: list[ToolCallSpec] | None = None
    prefix: bool | None = None


class ToolMessage(_Strict):
    role: Literal["tool"]
    content: str | list[Any] | None = None
    tool_call_id: str | None = None
    name: str | None = None


Message = Annotated[SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")]


class FunctionSpec(_Strict):
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None  # La Plateforme: hold the arguments to the schema (here: always, see engine)


class ToolSpec(_Strict):
    type: Literal["function"] = "function"
    function: FunctionSpec


TOOL_CHOICES = ("auto", "none", "any", "required")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")  # SDK 3.7.0's ReasoningEffort
MAX_TOP_LOGPROBS = 20  # alternatives per token (Mistral's docs give no limit as of 2026-08-21; 20 as OpenAI and vLLM)


def check_tool_choice(value: Any) -> Any:
    """`auto` | `none` | `any` | `required` | {"type": "function", "function": {"name": "..."}}; else a clear error."""
    if value is None or (isinstance(value, str) and value in TOOL_CHOICES):
        return value
    if isinstance(value, dict):
        fn = value.get("function")
        if value.get("type", "function") == "function" and isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return value
    raise ValueError("tool_choice must be 'auto', 'none', 'any', 'required' or "
                     "{'type': 'function', 'function': {'name': '<one of your tools>'}}")


def check_response_format(value: Any) -> Any:
    """{"type": "text" | "json_object"} or {"type": "json_schema", "json_schema": {"schema": {...}, ...}}."""
    if value is None:
        return value
    kind = value.get("type", "text")
    if kind in ("text", "json_object"):
        return value
    if kind == "json_schema":
        js = value.get("json_schema")
        if isinstance(js, dict) and isinstance(js.get("schema", js.get("schema_")), dict):
            return value
        raise ValueError("response_format.json_schema must be an object with a 'schema' object (a JSON schema)")
    raise ValueError("response_format.type must be 'text', 'json_object' or 'json_schema'")


class ChatRequest(_Strict):
    model: str
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0.0, le=MAX_TEMPERATURE)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=0)
    min_tokens: int | None = Field(None, ge=0)
    random_seed: int | None = Field(None, ge=0, lt=2**63)
    stop: str | list[str] | None = None
    stream: bool = False
    n: int | None = Field(None, ge=1)
    tools: list[ToolSpec] | None = Field(None, max_length=128)
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    # the fields SDK 3.7.0 sends beyond the ones above; each is checked here, so a bad value is a 422 naming it
    parallel_tool_calls: StrictBool | None = None  # None: the API's default, True
    logprobs: StrictBool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    prompt_logprobs: StrictBool | None = None
    reasoning_effort: str | None = None
    prompt_cache_key: str | None = Field(None, min_length=1, max_length=512)
    guardrails: list[dict[str, Any]] | None = None
    # in the published schema (2026-08-21) or sent by SDK 3.7: each does what the API does, or rules.py refuses it
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    safe_prompt: StrictBool | None = None
    metadata: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    prompt_mode: Literal["reasoning"] | None = None
    repetition_penalty: float | None = None
    top_k: int | None = Field(None, ge=0)
    top_prompt_logprobs: int | None = Field(None, ge=0)
    service_tier: str | None = None

    @field_validator("reasoning_effort")
    @classmethod
    def _check_reasoning_effort(cls, value: Any) -> Any:
        if value is not None and value not in REASONING_EFFORTS:
            raise ValueError(f"reasoning_effort must be one of {', '.join(REASONING_EFFORTS)} (SDK 3.7.0's values; "
                             "Mistral's docs list 'high' and 'none')")
        return value

    @field_validator("tool_choice")
    @classmethod
    def _check_tool_choice(cls, value: Any) -> Any:
        return check_tool_choice(value)

    @field_validator("response_format")
    @classmethod
    def _check_response_format(cls, value: Any) -> Any:
        return check_response_format(value)


class EmbeddingRequest(_Strict):
    model: str
    input: str | list[str] | None = None  # the SDK's `inputs=` goes out as "input", the published schema's only name
    metadata: dict[str, Any] | None = None
    output_dimension: int | None = Field(None, gt=0)
    output_dtype: Literal["float", "int8", "uint8", "binary", "ubinary"] | None = None
    encoding_format: Literal["float", "base64"] | None = None


# ---------------------------------------------------------------- the model worker (a queue, one thread)
