"""Each notebook's parameters, checked where they enter: a bad value stops the run in seconds, before any model loads.

Every notebook (00–10) declares, in the cell right after its `parameters` cell, what each knob accepts::

    check(globals(), TOP_K=Int(min=1), METRIC=OneOf("cosine", "l2"), PRECISIONS=ListOf(OneOf("int8", "nf4")))

and :func:`check` refuses a bad value with the notebook parameter's name, the value, what it accepts and an example.
`python -m helpers.course run` reads the same declaration from the .ipynb (`course.parameter_problems`), so a bad
`-p` value fails before a kernel even starts. Knobs shared with :mod:`helpers.settings` (BACKEND, DEVICE, LOCAL_URL, …)
are checked by settings' own functions, so a value settings learns to accept is accepted here too.
"""

from __future__ import annotations

import ast
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helpers.settings as settings

from ..settings import SettingsError
from .keyguard import looks_like_key, refuse_injected_secrets

_REF = re.compile(r"^\s*([A-Z_][A-Z0-9_]*)\s*(?:([+-])\s*(\d+))?\s*$")  # a bound naming another parameter: "TURNS - 1"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # "gpt2", "mistralai/Mistral-7B-Instruct-v0.3"


class ParameterError(SettingsError):
    """A notebook parameter has a value the notebook cannot use; the message names it and says what it accepts."""


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bound(bound: Any, params: dict[str, Any], largest: bool) -> tuple[float | None, str]:
    """A bound's number and how to say it: 16, "TURNS - 1 (5 here)", or for a list "max(CONCURRENCY) (16 here)"."""
    if bound is None or _number(bound):
        return bound, f"{bound}"
    ref = _REF.match(str(bound))
    if not ref:
        raise ValueError(f"bound {bound!r}: write a number or another parameter's name, e.g. 'TURNS - 1'")
    name, sign, amount = ref.groups()
    other = params.get(name)
    if isinstance(other, (list, tuple)):
        numbers = [v for v in other if _number(v)]
        other = (max if largest else min)(numbers) if numbers else None
        name = f"{'max' if largest else 'min'}({name})"
    if not _number(other):
        return None, ""  # the other parameter is itself wrong: it gets its own message
    value = other + (int(amount) if sign == "+" else -int(amount) if sign else 0)
    return value, f"{name}{f' {sign} {amount}' if sign else ''} ({value} here)"


class Kind:
    """What one parameter accepts. `problem` says what is wrong with a value (None: nothing)."""

    def problem(self, value: Any, name: str, params: dict[str, Any]) -> str | None:
        raise NotImplementedError

    def accepts(self, params: dict[str, Any] | None = None) -> str:
        raise NotImplementedError

    def example(self, params: dict[str, Any] | None = None) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Int(Kind):
    """A whole number, optionally within [min, max] (a bound may name another parameter), or "auto" if allowed."""

    min: Any = None
    max: Any = None
    auto: bool = False
    multiple_of: int | None = None

    def problem(self, value, name, params):
        if self.auto and value == "auto":
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            return "is not a whole number" + (" (pass it without quotes)" if str(value).strip().isdigit() else "")
        lo, lo_text = _bound(self.min, params, largest=True)
        hi, hi_text = _bound(self.max, params, largest=False)
        if lo is not None and value < lo:
            return f"is below {lo_text}"
        if hi is not None and value > hi:
            return f"is above {hi_text}"
        if self.multiple_of and value % self.multiple_of:
            return f"is not a multiple of {self.multiple_of}"
        return None

    def accepts(self, params=None):
        lo, hi = (_bound(b, params or {}, largest)[1] or b for b, largest in ((self.min, True), (self.max, False)))
        text = "a whole number"
        if self.min is not None and self.max is not None:
            text += f" from {lo} to {hi}"
        elif self.min is not None:
            text += f" of at least {lo}"
        elif self.max is not None:
            text += f" of at most {hi}"
        if self.multiple_of:
            text += f", a multiple of {self.multiple_of}"
        return text + (', or "auto"' if self.auto else "")

    def example(self, params=None):
        for bound, largest in ((self.min, True), (self.max, False)):
            number = _bound(bound, params or {}, largest)[0]
            if number is not None:
                return number + (-number % self.multiple_of if self.multiple_of else 0)
        return "auto" if self.auto else 1


@dataclass(frozen=True)
class Float(Kind):
    """A finite number within [min, max]; `above` is an exclusive lower bound (a temperature for sampling > 0); or
    "auto" if allowed."""

    min: float | None = None
    max: float | None = None
    above: float | None = None
    auto: bool = False

    def problem(self, value, name, params):
        if self.auto and value == "auto":
            return None
        if not _number(value) or not math.isfinite(value):
            quoted = isinstance(value, str) and re.fullmatch(r"\s*-?\d+(\.\d*)?\s*", value)
            return "is not a number" + (" (pass it without quotes)" if quoted else "")
        if self.min is not None and value < self.min:
            return f"is below {self.min}"
        if self.above is not None and value <= self.above:
            return f"is not above {self.above}"
        if self.max is not None and value > self.max:
            return f"is above {self.max}"
        return None

    def accepts(self, params=None):
        low = f"above {self.above}" if self.above is not None else f"from {self.min}" if self.min is not None else ""
        high = f"{' to' if self.min is not None and self.above is None else ' and at most'} {self.max}" \
            if self.max is not None else ""
        return f"a number {low}{high}".rstrip() + (', or "auto"' if self.auto else "")

    def example(self, params=None):
        if self.above is not None:
            return float(self.above) + (0.5 if self.max is None else (self.max - self.above) / 2)
        return float(self.min if self.min is not None else 1)


@dataclass(frozen=True, init=False)
class OneOf(Kind):
    """One of a fixed set of values: OneOf("cosine", "l2")."""

    choices: tuple

    def __init__(self, *choices: Any) -> None:
        object.__setattr__(self, "choices", tuple(choices))

    def problem(self, value, name, params):
        if value in self.choices:
            return None
        near = [c for c in self.choices if isinstance(value, str) and str(c).lower() == value.strip().lower()]
        return "is not an accepted value" + (f" (did you mean {near[0]!r}?)" if near else "")

    def accepts(self, params=None):
        return "one of " + ", ".join(repr(c) for c in self.choices)

    def example(self, params=None):
        return self.choices[0]


@dataclass(frozen=True)
class ListOf(Kind):
    """A list whose every element `item` accepts, with at least `min_len` elements."""

    item: Kind
    min_len: int = 1

    def problem(self, value, name, params):
        if not isinstance(value, (list, tuple)):
            one = value if self.item.problem(value, name, params) is None else self.item.example(params)
            return f"is not a list (write it in brackets, e.g. {[one]!r})"
        if len(value) < self.min_len:
            return "is empty" if not value else f"has {len(value)} elements, fewer than {self.min_len}"
        for i, element in enumerate(value):
            wrong = self.item.problem(element, f"{name}[{i}]", params)
            if wrong:
                return f"element {i} ({element!r}) {wrong}"
        return None

    def accepts(self, params=None):
        count = "one or more" if self.min_len == 1 else f"at least {self.min_len}"
        return f"a list of {count} elements, each {self.item.accepts(params)}"

    def example(self, params=None):
        return [self.item.example(params)] * max(1, self.min_len)


@dataclass(frozen=True)
class Text(Kind):
    """A non-empty string on one line (a model alias, a folder name)."""

    def problem(self, value, name, params):
        if not isinstance(value, str) or not value.strip() or "\n" in value:
            return "is not a non-empty string on one line"
        return None

    def accepts(self, params=None):
        return "a non-empty string"

    def example(self, params=None):
        return "text"


# ---------------------------------------------------------------- model names and paths
def _looks_like_path(text: str) -> bool:
    """'/data/m', './m', '~/m', 'a/b/c', 'C:\\m' look like paths; 'gpt2' and 'org/name' look like hub ids."""
    return (text.startswith(("/", "~", ".", "\\")) or "\\" in text or text.count("/") > 1 or text.endswith("/")
            or bool(re.match(r"^[A-Za-z]:", text)))


def model_ref_problem(text: str, cwd: Path | str | None = None) -> str | None:
    """What is wrong with a model given as a folder or a hub id (None: nothing), decided before transformers is called:
    a path that does not exist says so, instead of the hub's "Repo id must be in the form …" many frames later."""
    path = Path(cwd or ".") / Path(text).expanduser()
    if path.is_dir():
        return None if (path / "config.json").exists() else f"is a folder without a config.json ({path.resolve()})"
    if path.exists():
        return f"is a file ({path.resolve()}); give the folder that holds config.json"
    if _looks_like_path(text):
        return f"looks like a path, and {path.resolve()} does not exist"
    if not _HUB_ID.match(text):
        return "is neither an existing folder nor a hub id like 'org/name'"
    return None


def local_model_problem(value: str, cwd: Path | str | None = None) -> str | None:
    """LOCAL_MODEL: 'auto', 'smollm2-135m', 'standin', 'config:<name>', a hub id or a folder that exists."""
    text = value.strip()
    if text.lower() in ("auto", settings.SMOLLM, settings.STANDIN):
        return None
    if text.startswith("config:"):
        return config_problem(text.removeprefix("config:"), cwd)
    if "/" not in text and not (Path(cwd or ".") / text).exists():  # a hub id has an owner: 'org/name'
        import difflib

        near = difflib.get_close_matches(text.lower(), ["auto", settings.SMOLLM, settings.STANDIN], n=1)
        return "is not a name the course knows, a hub id ('org/name') or an existing folder" + \
            (f" (did you mean {near[0]!r}?)" if near else "")
    return model_ref_problem(text, cwd)


def shipped_configs() -> list[str]:
    """The configs in data/configs (as memory.shipped_configs: memory imports figures → course → this module)."""
    return sorted(p.parent.name for p in (settings.repo_root() / "data" / "configs").glob("*/config.json"))


def config_problem(name: str, cwd: Path | str | None = None) -> str | None:
    """A config for the memory estimates: a name shipped in data/configs, a folder with config.json, or a hub id."""
    if name.removeprefix("config:") in shipped_configs():
        return None
    wrong = model_ref_problem(name.removeprefix("config:"), cwd)
    return wrong and f"{wrong} (shipped configs: {', '.join(shipped_configs())})"


@dataclass(frozen=True)
class Setting(Kind):
    """A knob helpers.settings resolves (BACKEND, DEVICE, LOCAL_MODEL, …): None means its environment variable, else its
    default; any other value is checked by the rules settings applies (`resolve_device`, `check_url`, BACKENDS)."""

    name: str = ""

    def problem(self, value, name, params):
        env_name = settings.KNOBS[self.name][0]
        origin = ""
        if value in (None, ""):
            value = os.environ.get(env_name, "").strip()
            if not value:
                return None
            origin = f"means ${env_name}, and ${env_name}={value!r} "
        wrong = self._problem(value, getattr(params, "cwd", None))
        return wrong and origin + wrong

    def _problem(self, value: Any, cwd: Path | None) -> str | None:
        if not isinstance(value, str) or not value.strip():
            return "is not a string" if not isinstance(value, str) else "is empty"
        if any(ch.isspace() for ch in value.strip()):
            return "has spaces in it"
        try:
            if self.name == "BACKEND" and value.strip().lower() not in settings.BACKENDS:
                return "is not an accepted value"
            if self.name == "DEVICE":
                settings.resolve_device(value.strip())
            if self.name == "LOCAL_URL":
                settings.check_url(value)
        except SettingsError as exc:  # settings' own words, without repeating the name and value
            text = str(exc).removeprefix(f"{self.name}={value!r} ").removeprefix("but ").rstrip(".")
            return text if text.startswith("is ") else f"is refused: {text}"
        if self.name == "LOCAL_MODEL":
            return local_model_problem(value, cwd)
        if self.name == "LOCAL_EMBED_MODEL":
            return model_ref_problem(value.strip(), cwd)
        return None

    def accepts(self, params=None):
        return f"None (${settings.KNOBS[self.name][0]}, else {settings.KNOBS[self.name][1]!r}) or " + \
            settings.KNOBS[self.name][2].replace("`", "'")

    def example(self, params=None):
        return {"LOCAL_URL": "http://127.0.0.1:8000"}.get(self.name, settings.KNOBS[self.name][1])


@dataclass(frozen=True)
class Priced(Kind):
    """A chat model alias with a dated price row in data/models.csv (notebook 03 prices every answer)."""

    def _aliases(self) -> list[str]:
        from ..catalog import load_tiers

        return [alias for alias, row in load_tiers().items() if row.tier_rank > 0]

    def problem(self, value, name, params):
        return None if value in self._aliases() else "has no price row in data/models.csv"

    def accepts(self, params=None):
        return "a chat alias priced in data/models.csv: " + ", ".join(repr(a) for a in self._aliases())

    def example(self, params=None):
        return self._aliases()[0]


@dataclass(frozen=True)
class ModelConfig(Kind):
    """A model config for estimates: a name shipped in data/configs, a folder with config.json, or a hub id."""

    def problem(self, value, name, params):
        if not isinstance(value, str) or not value.strip():
            return "is not a config name"
        return config_problem(value.strip(), getattr(params, "cwd", None))

    def accepts(self, params=None):
        return "a config shipped in data/configs (" + ", ".join(repr(c) for c in shipped_configs()) + \
            "), a folder with config.json, or a hub id"

    def example(self, params=None):
        return "mistral-7b-instruct-v0.3"


KINDS: dict[str, type[Kind]] = {k.__name__: k for k in (Int, Float, OneOf, ListOf, Text, Setting, Priced, ModelConfig)}


# ---------------------------------------------------------------- checking
class _Values(dict):
    """Parameter values by name, and the folder the notebook runs in (relative paths are resolved from there)."""

    cwd: Path | None = None


def key_shaped(value: Any) -> bool:
    """True if a value, or any element of a list/dict value, looks like an API key (secrets.looks_like_key)."""
    if isinstance(value, dict):
        return any(key_shaped(k) or key_shaped(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        return any(key_shaped(v) for v in value)
    return looks_like_key(value)


def problems(values: dict[str, Any], declared: dict[str, Kind], defaults: dict[str, Any] | None = None,
             cwd: Path | str | None = None) -> list[str]:
    """One sentence per bad parameter: its name, the value (never a key-shaped one), what it accepts, an example."""
    given = _Values(values)
    given.cwd = Path(cwd) if cwd else None
    defaults = defaults or {}
    found = []
    for name, kind in declared.items():
        if name not in values:
            continue
        if isinstance(kind, Setting) and not kind.name:
            kind = Setting(name)
        value = values[name]
        if key_shaped(value):
            found.append(f"{name} holds a value shaped like an API key (not shown). Papermill writes every parameter "
                         "into the executed notebook: delete that output file, and pass keys through the environment "
                         f"instead (e.g. {settings.KEY_ENV}=… make course) or Colab secrets.")
            continue
        wrong = kind.problem(value, name, given)
        if wrong:
            default = defaults.get(name)
            example = default if default is not None and not kind.problem(default, name, given) else kind.example(given)
            found.append(f"{name}={value!r} {wrong}. {name} accepts {kind.accepts(given)}; e.g. {name}={example!r}.")
    return found


def check(namespace: dict[str, Any], /, **declared: Kind) -> None:
    """Check this notebook's parameters (`check(globals(), TOP_K=Int(min=1), …)`); one error names every bad one.
    The notebooks call it through helpers.course.knobs: `check(globals(), "05")`, with the kinds declared there."""
    __tracebackhide__ = True  # IPython shows the message, not this function's frames
    refuse_injected_secrets()
    missing = sorted(set(declared) - set(namespace))
    if missing:
        raise NameError(f"check() declares {', '.join(missing)}, which the parameters cell does not set")
    found = problems({n: namespace[n] for n in declared}, declared, _defaults_from_history(declared))
    if len(found) == 1:
        raise ParameterError(found[0])
    if found:
        raise ParameterError(f"{len(found)} parameters are wrong:\n" + "\n".join(f"- {f}" for f in found))


def literal_assignments(source: str) -> dict[str, Any]:
    """NAME = <literal> lines of a cell, as values (others are skipped)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return found


def _defaults_from_history(names: dict[str, Any]) -> dict[str, Any]:
    """The parameters cell's own values (for the example in a message), read from the kernel's input history."""
    try:
        from IPython import get_ipython
    except ImportError:
        return {}
    shell = get_ipython()
    for source in reversed((shell.user_ns.get("In", []) or []) if shell is not None else []):
        if isinstance(source, str) and not source.lstrip().startswith("# Parameters"):
            values = literal_assignments(source)
            if values and set(names) <= set(values):
                return values
    return {}
