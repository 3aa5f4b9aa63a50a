"""Function calling: a tool spec from a typed Python function, and the loop that runs tool calls until the model answers.

    function → tool_spec(function) → chat.complete(tools=…) → tool_calls → your function → tool message → answer

`tool_spec` lets pydantic write the JSON schema from the signature (types, defaults, Optional, Literal/Enum) and
takes parameter descriptions from the docstring. Value-shaped parameters carry their shape into the schema:
`Annotated[str, Field(pattern=r"^T[0-9]{4}$")]` gives a `pattern`, `Literal[...]` an `enum`,
`Annotated[int, Field(ge=1, le=10)]` a `minimum`/`maximum` — and the same pydantic model checks the arguments. `run_tools` never crashes on a bad tool call: an
unknown function, arguments that are not JSON or break the schema, or a function that raises all go back
to the model as the tool's result, so it can correct itself.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic


class ToolSpecError(TypeError):
    """A function whose signature cannot be described as a JSON schema; the message says which parameter and why."""


# ---------------------------------------------------------------- docstrings
_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Params|Returns?|Raises|Yields|Examples?|Notes?):\s*$", re.I)


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(summary, {param: description}) from a Google-style (`Args:`) or Sphinx-style (`:param x:`) docstring."""
    doc = inspect.cleandoc(doc or "")
    params: dict[str, str] = {}
    for name, text in re.findall(r":param\s+(?:[^:]*\s)?(\w+):\s*(.+?)(?=\n\s*:|\Z)", doc, re.S):
        params[name] = " ".join(text.split())
    summary_lines: list[str] = []
    section = None
    current = None
    for line in doc.splitlines():
        header = _SECTION.match(line)
        if header:
            section = header.group(1).lower()
            current = None
            continue
        if line.strip().startswith(":"):
            section = "sphinx"
            continue
        if section is None:
            summary_lines.append(line)
        elif section in ("args", "arguments", "parameters", "params"):
            m = re.match(r"^\s+(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$", line)
            if m and (current is None or len(line) - len(line.lstrip()) <= current[1]):
                current = (m.group(1), len(line) - len(line.lstrip()))
                params[m.group(1)] = m.group(2).strip()
            elif current and line.strip():
                params[current[0]] = (params[current[0]] + " " + line.strip()).strip()
    summary = " ".join(" ".join(summary_lines).split())
    return summary, params


# ---------------------------------------------------------------- specs
def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace pydantic's `$ref`s into `$defs` by the definitions themselves (simpler for models to follow)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node and node["$ref"].startswith("#/$defs/"):
                target = walk(dict(defs[node["$ref"].split("/")[-1]]))
                rest = {k: walk(v) for k, v in node.items() if k != "$ref"}
                return {**target, **rest}
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


def _drop_titles(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _drop_titles(v) for k, v in node.items()
                if not (k == "title" and isinstance(v, str))}
    if isinstance(node, list):
        return [_drop_titles(v) for v in node]
    return node


def _unwrap(fn: Callable[..., Any]) -> Callable[..., Any]:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def arguments_model(fn: Callable[..., Any], name: str | None = None) -> type[pydantic.BaseModel]:
    """A pydantic model of the function's parameters (used both to write the schema and to check arguments)."""
    base = _unwrap(fn)
    name = name or getattr(base, "__name__", None) or "tool"
    try:
        hints = typing.get_type_hints(base, include_extras=True)
    except Exception as exc:
        raise ToolSpecError(f"{name}: cannot read its type hints ({exc}).") from exc
    _, param_docs = parse_docstring(base.__doc__)
    fields: dict[str, Any] = {}
    for pname, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolSpecError(
                f"{name}: parameter {'*' if param.kind == param.VAR_POSITIONAL else '**'}{pname} cannot be described "
                "as a JSON schema (a model needs named, typed arguments). Give each argument a name and a type."
            )
        if param.kind == param.POSITIONAL_ONLY:
            raise ToolSpecError(f"{name}: parameter {pname} is positional-only; the model passes arguments by name.")
        if pname not in hints:
            raise ToolSpecError(f"{name}: parameter {pname!r} has no type annotation. Annotate it (e.g. "
                                f"`{pname}: str`) so the model knows what to send.")
        try:
            pydantic.TypeAdapter(hints[pname]).json_schema()
        except Exception:
            shown = getattr(hints[pname], "__name__", None) or repr(hints[pname])
            raise ToolSpecError(
                f"{name}: parameter {pname!r} has type {shown}, which cannot be written as JSON schema. Tools take "
                "plain values (str, int, float, bool, Literal, Enum, lists or dicts of them); keep objects such as "
                "DataFrames inside the function (bind them with functools.partial or a closure)."
            ) from None
        default = ... if param.default is inspect.Parameter.empty else param.default
        # a description from the docstring; else the one in `Annotated[..., Field(description=...)]` stays
        described = {"description": param_docs[pname]} if pname in param_docs else {}
        fields[pname] = (hints[pname], pydantic.Field(default, **described))
    try:
        return pydantic.create_model(f"{name}_arguments", __config__=pydantic.ConfigDict(extra="forbid"), **fields)
    except Exception as exc:
        raise ToolSpecError(f"{name}: {exc}") from exc


def tool_spec(fn: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> dict[str, Any]:
    """The `tools=[...]` entry for a typed Python function: name, docstring summary, and a JSON schema of its arguments."""
    base = _unwrap(fn)
    name = name or getattr(base, "__name__", None)
    if not name or not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name):
        raise ToolSpecError(f"Tool name {name!r} must be 1-64 letters, digits, '_' or '-'; pass name=...")
    summary, _ = parse_docstring(base.__doc__)
    model = arguments_model(fn, name)
    try:
        schema = model.model_json_schema()
    except pydantic.errors.PydanticInvalidForJsonSchema as exc:
        raise ToolSpecError(f"{name}: a parameter's type cannot be written as JSON schema ({exc}). "
                            "Take plain values (str, int, float, bool, Literal, Enum, lists of them).") from exc
    schema = _drop_titles(_inline_refs(schema))
    schema.pop("additionalProperties", None)
    schema.setdefault("properties", {})
    schema.setdefault("required", [])
    return {"type": "function",
            "function": {"name": name, "description": description or summary or name, "parameters": schema}}


# ---------------------------------------------------------------- calling tools
@dataclass
class ToolResult:
    """What a tool call gave back: the content sent to the model, and whether it was an error."""

    name: str
    arguments: Any
    content: str
    error: bool


class Toolbox:
    """Functions the model may call, by name, with their specs and argument checking."""

    def __init__(self, functions: Sequence[Callable[..., Any]] | dict[str, Callable[..., Any]]) -> None:
        items = functions.items() if isinstance(functions, dict) else (
            (getattr(_unwrap(f), "__name__", ""), f) for f in functions)
        self.functions: dict[str, Callable[..., Any]] = {}
        self.models: dict[str, type[pydantic.BaseModel]] = {}
        self.specs: list[dict[str, Any]] = []
        for name, fn in items:
            if name in self.functions:
                raise ToolSpecError(f"Two tools are named {name!r}: the model calls tools by name, so each name must "
                                    "be unique. Rename one (pass a dict {name: function}, or tool_spec(fn, name=...)).")
            self.specs.append(tool_spec(fn, name=name))
            self.functions[name] = fn
            self.models[name] = arguments_model(fn, name)
        if len(self.specs) > 128:
            raise ToolSpecError(f"{len(self.specs)} tools: the API accepts at most 128 per request.")

    def call(self, name: str, arguments: Any) -> ToolResult:
        """Run one tool call; any problem comes back as an error result the model can read, never as an exception."""
        if name not in self.functions:
            return self._error(name, arguments, f"unknown function {name!r}; available: {', '.join(self.functions)}")
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                return self._error(name, arguments, f"arguments are not valid JSON ({exc.msg} at position {exc.pos})")
        if not isinstance(arguments, dict):
            return self._error(name, arguments, "arguments must be a JSON object of named parameters")
        try:
            checked = self.models[name].model_validate(arguments)
        except pydantic.ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(arguments)'}: {e['msg']}" for e in exc.errors())
            return self._error(name, arguments, f"arguments do not match the schema: {problems}")
        try:
            value = self.functions[name](**{k: getattr(checked, k) for k in type(checked).model_fields})
        except Exception as exc:
            return self._error(name, arguments, f"{type(exc).__name__}: {exc}")
        return ToolResult(name, arguments, value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False), False)

    @staticmethod
    def _error(name: str, arguments: Any, message: str) -> ToolResult:
        return ToolResult(name, arguments, json.dumps({"error": message}, ensure_ascii=False), True)


# ---------------------------------------------------------------- the loop
@dataclass
class Turn:
    """One model response in the loop: its text, the tool calls it made, and what they returned."""

    number: int
    content: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    results: list[ToolResult] = field(default_factory=list)
    finish_reason: str | None = None


@dataclass
class ToolRun:
    """The whole exchange: turns, the final answer (None if the guard stopped it), and counts."""

    turns: list[Turn]
    messages: list[dict[str, Any]]
    answer: str | None
    stopped: str  # "answered" | "max_turns"

    @property
    def tool_calls(self) -> int:
        return sum(len(t.tool_calls) for t in self.turns)

    @property
    def errors_fed_back(self) -> int:
        return sum(r.error for t in self.turns for r in t.results)

    def transcript(self) -> str:
        """The exchange as text, one line per model turn and tool result."""
        return "\n".join(format_turn(t) for t in self.turns) + (
            "\n⛔ stopped: max_turns reached before the model answered" if self.stopped == "max_turns" else "")


def _arguments_text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def format_turn(turn: Turn) -> str:
    """Lines for one turn of the transcript."""
    lines = []
    if turn.tool_calls:
        calls = ", ".join(f"{c['function']['name']}({_arguments_text(c['function']['arguments'])})"
                          for c in turn.tool_calls)
        lines.append(f"turn {turn.number} · model asks for {len(turn.tool_calls)} tool call(s): {calls}")
        for r in turn.results:
            mark = "⚠️ error fed back" if r.error else "→"
            lines.append(f"    {r.name} {mark} {r.content}")
    else:
        lines.append(f"turn {turn.number} · model answers ({turn.finish_reason}): {turn.content!r}")
    return "\n".join(lines)


def content_text(message_or_content: Any, *, thinking: bool = False) -> str:
    """The text of a chat message (or of its `content`): a plain string, or the text chunks of a list joined.

    Reasoning models answer with a list of chunks — `thinking` chunks, then `text` chunks. Only the answer's
    text is returned unless `thinking=True`, which puts the reasoning first. Works on SDK objects and on dicts;
    None or unset content gives "".
    """
    content = message_or_content
    if isinstance(content, dict) and "role" in content:
        content = content.get("content")
    elif not isinstance(content, (str, list, tuple, dict)) and hasattr(content, "role"):
        content = getattr(content, "content", None)
    if content is None or content.__class__.__name__ == "Unset":
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]

    def field(part: Any, name: str) -> Any:
        return part.get(name) if isinstance(part, dict) else getattr(part, name, None)

    answer, reasoning = [], []
    for part in content:
        if isinstance(part, str):
            answer.append(part)
        elif field(part, "type") == "thinking" or field(part, "thinking") is not None:
            reasoning.append(content_text(list(field(part, "thinking") or [])))
        else:
            text = field(part, "text")
            answer.append(text if isinstance(text, str) else "")
    return "".join(reasoning) + "".join(answer) if thinking else "".join(answer)


def run_tools(
    client: Any,
    model: str,
    messages: list[dict[str, Any]],
    tools: Toolbox | Sequence[Callable[..., Any]],
    *,
    tool_choice: str = "auto",
    max_turns: int = 5,
    parallel_tool_calls: bool = True,
    verbose: bool = True,
    **kwargs: Any,
) -> ToolRun:
    """Call the model, run the tools it asks for, feed results back, repeat until it answers (or `max_turns`).

    `tool_choice` applies to the first turn (`auto`, `any`, `none`, or a function name); later turns use
    `auto`, so a forced first call can still end in an answer.
    """
    toolbox = tools if isinstance(tools, Toolbox) else Toolbox(tools)
    if max_turns < 1:
        raise ValueError("max_turns must be at least 1.")
    if isinstance(tool_choice, dict):  # the API's own shape: {"type": "function", "function": {"name": ...}}
        tool_choice = (tool_choice.get("function") or {}).get("name") or ""
    if tool_choice not in ("auto", "any", "none", "required") and tool_choice not in toolbox.functions:
        raise ToolSpecError(f"tool_choice={tool_choice!r} names no tool in the toolbox. Use 'auto', 'any', 'none', "
                            f"'required' or one of the tools: {', '.join(toolbox.functions)}.")
    history = list(messages)
    turns: list[Turn] = []
    for number in range(1, max_turns + 1):
        choice_arg: Any = tool_choice if number == 1 else "auto"
        if choice_arg not in ("auto", "any", "none", "required"):
            choice_arg = {"type": "function", "function": {"name": choice_arg}}
        response = client.chat.complete(model=model, messages=history, tools=toolbox.specs, tool_choice=choice_arg,
                                        parallel_tool_calls=parallel_tool_calls, **kwargs)
        choice = response.choices[0]
        message = choice.message
        calls = [{"id": c.id, "type": "function",
                  "function": {"name": c.function.name, "arguments": _arguments_text(c.function.arguments)}}
                 for c in (message.tool_calls or [])]
        turn = Turn(number, content_text(message.content), calls, [], str(choice.finish_reason))
        turns.append(turn)
        assistant: dict[str, Any] = {"role": "assistant", "content": turn.content}
        if calls:
            assistant["tool_calls"] = calls
        history.append(assistant)
        if not calls:
            if verbose:
                print(format_turn(turn))
            return ToolRun(turns, history, turn.content, "answered")
        for call in calls:
            result = toolbox.call(call["function"]["name"], call["function"]["arguments"])
            turn.results.append(result)
            history.append({"role": "tool", "name": call["function"]["name"], "content": result.content,
                            "tool_call_id": call["id"]})
        if verbose:
            print(format_turn(turn))
    if verbose:
        print(f"⛔ stopped after {max_turns} turns: the model was still calling tools")
    return ToolRun(turns, history, None, "max_turns")
