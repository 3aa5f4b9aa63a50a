"""Judge every model answer a notebook shows: right, wrong (and how), cut off at `max_tokens`, or unchecked.

One helper for API and local answers alike, used by every notebook that shows a model's answer (01–10). A tiny
model's failures then read as lessons, and no sentence can claim more than the verdict computed in the run.
A notebook keeps one `Verdicts` tally; its `counts` go into `record(verdicts=...)`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

KINDS = ("right", "wrong", "cut", "unchecked")
ICONS = {"right": "✓", "wrong": "✗", "cut": "✂", "unchecked": "?"}

# what `expect=` accepts: a phrase, alternatives, a regex, or a function answer -> bool | (bool, how)
Expectation = str | Iterable[str] | re.Pattern | Callable[[str], Any]


@dataclass(frozen=True)
class Verdict:
    """What one answer was judged: `kind` (right / wrong / cut / unchecked) and `why`, in words."""

    kind: str
    why: str
    answer: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"verdict kind {self.kind!r}: use one of {', '.join(KINDS)}")

    @property
    def ok(self) -> bool:
        return self.kind == "right"

    def __str__(self) -> str:
        return f"{ICONS[self.kind]} {self.kind}: {self.why}"


def answer_text(answer: Any) -> tuple[str, str | None]:
    """(text, finish_reason) from a string, an SDK response, a choice or a message (content as text or chunks)."""
    finish = None
    if hasattr(answer, "choices"):  # ChatCompletionResponse
        answer = answer.choices[0]
    if hasattr(answer, "finish_reason"):  # a choice
        finish = str(getattr(answer.finish_reason, "value", answer.finish_reason) or "") or None
        answer = answer.message
    if hasattr(answer, "content") and not isinstance(answer, str):  # a message
        answer = answer.content
    if isinstance(answer, list):  # content chunks: keep the text ones (thinking chunks are not the answer)
        answer = "".join(getattr(c, "text", "") or (c.get("text", "") if isinstance(c, dict) else "") for c in answer)
    return ("" if answer is None else str(answer)), finish


def _phrases(expect: Any) -> list[str] | None:
    if isinstance(expect, str):
        return [expect]
    if isinstance(expect, Iterable) and not isinstance(expect, (bytes, dict)):
        items = list(expect)
        if all(isinstance(i, str) for i in items):
            return items
    return None


def _contains(text: str, phrase: str) -> bool:
    """Case-insensitive match of a phrase on word boundaries ('Paris' matches 'paris.' but not 'Parisian')."""
    # a number must not run on into more digits: '15,000' is not in '15,000,000', nor '4' in '4.5'
    pattern = r"(?<!\w)(?<!\d[,.])" + re.escape(phrase.strip()) + r"(?!\w)(?![,.]\d)"
    return re.search(pattern, text, flags=re.I) is not None


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# a stretch of 6–80 characters said four or more times in a row ("a silent one, a silent one, …"): a decoding loop
_LOOP = re.compile(r"(.{6,80}?)(?:\s*\1){3,}", re.S)


def stuck_in_loop(text: str) -> tuple[str, int] | None:
    """(the repeated stretch, how many times) when the answer is stuck repeating itself, else None.

    Greedy decoding of a small model often falls into a loop; more tokens would only repeat it, so a loop is a
    wrong answer, not one cut short. A stretch counts when it holds at least two letters (a table rule does not)."""
    flat = " ".join(text.split())
    for found in _LOOP.finditer(flat):
        unit = found.group(1)
        if sum(ch.isalpha() for ch in unit) >= 2:
            times = len(re.findall(re.escape(unit.strip(" ,;")), found.group(0)))
            return unit.strip(" ,;"), times
    return None


def judge(answer: Any, expect: Expectation | None = None, *, reject: Iterable[str] = (),
          finish_reason: str | None = None, look_for: str | None = None, definitive: bool = False,
          max_chars: int | None = None) -> Verdict:
    """Judge one answer against what it should say; the verdict says in words what matched or what is missing.

    - `expect`: a phrase (matched case-insensitively on word boundaries), a list of wordings of one fact (any one
      will do: the verdict names the one found, or the first when none is), a compiled regex, or a function of the
      text returning a bool, `(bool, how)` or `(bool, how, final)` — `final`: a failure more tokens cannot mend.
    - `reject`: phrases that make an answer wrong even when `expect` matches (e.g. "not a prime").
    - `finish_reason`: taken from an SDK response when one is given; `"length"` means the answer was cut at
      `max_tokens`. A cut answer that already holds the expected fact is right; otherwise it is `cut`, not wrong.
    - `look_for`: with no `expect`, one line on what a reader should check themselves (the verdict is `unchecked`).
    - `definitive`: a failed check is `wrong` even when the answer was cut — for formats the start already breaks
      (one word asked, a sentence begun): more tokens could not have made it right.
    - `max_chars`: the longest the answer could be (a JSON schema's `maxLength` on it). An answer that filled it
      finished in its format, so it is not `cut` (that is `max_tokens`); a wrong one says it used all its room.

    The rule for the two failures: `wrong` is an error more tokens cannot mend (a wrong fact, an invented name, a
    broken format, a loop); `cut` is an answer stopped at `max_tokens` before it could say the fact.
    An answer stuck repeating itself (`stuck_in_loop`) is `wrong`, cut or not, unless it already holds the expected
    fact; with no `expect` too: a loop is a failure whatever the question.
    """
    text, found_finish = answer_text(answer)
    finish = finish_reason or found_finish
    finish = None if finish is None else str(getattr(finish, "value", finish))
    cut = finish == "length"
    loop = stuck_in_loop(text)
    looping = f"stuck in a loop: {_short(loop[0], 40)!r} {loop[1]} times in a row" if loop else ""
    if expect is None:
        if loop:
            return Verdict("wrong", looping, text)
        if cut:
            return Verdict("cut", "stopped at max_tokens (no answer key to check it against)", text)
        return Verdict("unchecked", f"no answer key: {look_for or 'read it yourself'}", text)
    if not text.strip():
        kind = "cut" if cut else "wrong"
        return Verdict(kind, "stopped at max_tokens before any text" if cut else "empty answer", text)
    hit_reject = [r for r in reject if _contains(text, r)]
    how, final = "", definitive
    phrases = _phrases(expect)
    if phrases is not None:
        found = next((p for p in phrases if _contains(text, p)), None)
        ok = found is not None
        others = f" (nor {len(phrases) - 1} other wording{'s' * (len(phrases) > 2)})" if len(phrases) > 1 else ""
        how = f"says {found!r}" if ok else f"does not say {phrases[0]!r}{others}"
    elif isinstance(expect, re.Pattern):
        found = expect.search(text)
        ok = found is not None
        how = f"says {found.group(0).strip()!r}" if ok else "says none of the accepted phrasings"
    elif callable(expect):
        result = expect(text)
        if isinstance(result, tuple):
            ok, how = bool(result[0]), str(result[1])
            final = final or (len(result) > 2 and bool(result[2]))
        else:
            ok = bool(result)
    else:
        raise TypeError(f"expect={expect!r}: give a phrase, a list of phrases, a compiled regex or a function")
    if ok and hit_reject:
        return Verdict("wrong", f"{how}, but also {' and '.join(repr(r) for r in hit_reject)}", text)
    if ok:
        return Verdict("right", how + (f" (then {looping})" if loop else " (then cut at max_tokens)" if cut else ""),
                       text)
    if loop:
        return Verdict("wrong", f"{how}; {looping}" if how else looping, text)
    if max_chars is not None and len(text) >= max_chars:
        how += f" in all {max_chars} characters the schema allowed (its maxLength)"
    if cut and not final and not hit_reject:  # a rejected phrase already said cannot be unsaid by more tokens
        return Verdict("cut", f"stopped at max_tokens; {how}" if how else "stopped at max_tokens", text)
    if hit_reject:
        how += f"; says {' and '.join(repr(r) for r in hit_reject)}"
    if cut:
        how += " (also cut at max_tokens)"
    return Verdict("wrong", how or "fails the check", text)


@dataclass
class Verdicts:
    """A notebook's tally: `check` judges, prints and counts an answer; `counts` is what `record` stores."""

    items: list[tuple[str, Verdict]] = field(default_factory=list)

    def check(self, answer: Any, expect: Expectation | None = None, *, label: str = "", show: bool = True,
              **kwargs: Any) -> Verdict | None:
        """Judge an answer (see `judge`) and count it; print the verdict when `show` (then return None, so a cell
        that ends with this call shows it once), else return it (`self.items[-1]` holds it either way)."""
        v = judge(answer, expect, **kwargs)
        self.items.append((label, v))
        if show:
            print(f"verdict{f' ({label})' if label else ''}: {v}")
            return None
        return v

    def add(self, verdict: Verdict, label: str = "") -> Verdict:
        """Count a verdict computed elsewhere (e.g. by a scorer that knows the right function and values)."""
        self.items.append((label, verdict))
        return verdict

    @property
    def counts(self) -> dict[str, int]:
        """{'right': n, 'wrong': n, 'cut': n, 'unchecked': n, 'total': n} for `record(verdicts=...)`."""
        out = {k: sum(1 for _, v in self.items if v.kind == k) for k in KINDS}
        out["total"] = len(self.items)
        return out

    def table(self):
        """Every verdict of this run as a DataFrame (label, kind, why, answer)."""
        import pandas as pd

        return pd.DataFrame([{"label": lab, "verdict": v.kind, "why": v.why, "answer": _short(v.answer, 80)}
                             for lab, v in self.items])

tally = Verdicts()  # the running notebook's tally: `check(globals(), "NN")` (helpers.course.knobs) empties it as a run starts


def versus_chance(accuracy: float | None, n_classes: int, majority_rate: float | None = None,
                  n: int | None = None) -> str:
    """One line placing an accuracy beside chance (and the majority-class rate), computed from the numbers."""
    if accuracy is None:
        return "accuracy: not measured (no answer could be scored)"
    chance = 1 / n_classes
    # a binomial standard error tells "at chance" from "above": within 2 SE of chance is at chance
    se = (chance * (1 - chance) / n) ** 0.5 if n else 0.0
    if accuracy > chance + 2 * se:
        where = "above chance"
    elif accuracy < chance - 2 * se:
        where = "below chance"
    else:
        where = "at chance"
    line = f"accuracy {accuracy:.3f} vs chance {chance:.3f} (1/{n_classes})"
    if majority_rate is not None:
        line += f", always-the-commonest-label {majority_rate:.3f}"
        if accuracy <= majority_rate and where == "above chance":
            where = "above chance, but no better than always answering the commonest label"
    return f"{line}: {where}" + (f" over {n} answers" if n else "")
