"""Notebook 04's rules for judging function calling: the right call, an answer that passes a tool's result on.

Each rule returns a function of the answer's text giving `(right?, how)`, for one short verdict call beside the answer:
`tally.check(step4, calling.passes_on(result), label="step 4")`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..verdicts import Verdict, judge

STATUSES = ("Paid", "Pending", "Failed", "Refunded")
MARKUP = ("<tool_response>", "<tool_call>", "[TOOL_RESULTS]")
_PLACEHOLDER = re.compile(r"\{\{\s*\w+\s*\}\}")  # a template slot such as {{transaction_id}}, never a real value
_ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_DAY = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)\b", re.I)
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")

Rule = Callable[[str], tuple[bool, str]]


def _says(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text, re.I) is not None


def calls(function: str, transaction_id: str) -> Rule:
    """Right when the call text names this function with this transaction id, e.g. 'f({"transaction_id": "T1001"})'."""
    def rule(text: str) -> tuple[bool, str]:
        ok = text.startswith(f"{function}(") and f'"{transaction_id}"' in text
        return ok, f"called {text}" + ("" if ok else f"; wanted {function} with {transaction_id}")
    return rule


def passes_on(result: dict[str, Any]) -> Rule:
    """Right when the answer states the tool's result and nothing that contradicts it.

    A status: says it, and no other status. A date (YYYY-MM-DD): says it, and no other date, day ('the 20th') or
    month. An error: says the transaction does not exist, and invents no status. Echoing tool markup, or a template
    slot such as `{{transaction_id}}` where an id belongs, is wrong: that answers nobody.
    """
    def rule(text: str) -> tuple[bool, str]:
        echoed = [m for m in MARKUP if m in text]
        if echoed:
            return False, f"echoes the tool's markup {echoed[0]} instead of answering"
        if slot := _PLACEHOLDER.search(text):
            return False, f"repeats the template slot {slot.group(0)} where a transaction id belongs"
        if "error" in result:
            invented = [s for s in STATUSES if _says(text, s)]
            ok = not invented and any(_says(text, w) for w in ("no", "not", "unknown", "error", "exist", "found"))
            return ok, "says the lookup failed" if ok else (f"invents {invented}" if invented else
                                                            "does not say the lookup failed")
        if "status" in result:
            told = result["status"]
            others = [s for s in STATUSES if s != told and _says(text, s)]
            if not _says(text, told):
                return False, f"does not say {told!r}"
            return (not others, f"says {told!r}" + (f", but also {others}" if others else ""))
        told = result["date"]
        year, month, day = told.split("-")
        if told not in text:
            return False, f"does not say {told!r}"
        other_dates = [d for d in _ISO_DATE.findall(text) if d != told]
        other_days = [m.group(0) for m in _DAY.finditer(text) if int(m.group(1)) != int(day)]
        other_months = [m for i, m in enumerate(_MONTHS, 1) if i != int(month) and _says(text, m)]
        wrong = other_dates + other_days + other_months
        return (not wrong, f"says {told!r}" + (f", but also {wrong}: a garbled date" if wrong else ""))
    return rule


def names_all(facts: Iterable[str]) -> Rule:
    """Right when the answer names every fact (e.g. a status and a date), in an answer of its own (no markup echoed)."""
    facts = [str(f) for f in facts]

    def rule(text: str) -> tuple[bool, str]:
        echoed = [m for m in MARKUP if m in text]
        missing = [f for f in facts if f.lower() not in text.lower()]
        if echoed:
            return False, f"echoes the tool's markup {echoed[0]} instead of answering"
        return not missing, (f"says {' and '.join(map(repr, facts))}" if not missing else
                             f"does not say {' or '.join(map(repr, missing))}")
    return rule


def loop_verdict(answer: str | None, rule: Rule, max_turns: int) -> Verdict:
    """A tool loop's answer as a verdict; no answer at all is a stop at `max_turns`, said as such (not 'empty')."""
    if answer is None:
        return Verdict("cut", f"no answer: the loop stopped at max_turns={max_turns} while the model was still "
                              "calling tools", "")
    return judge(answer, rule)


def loop_counts(messages: Sequence[dict[str, Any]], answer: str | None, first: int = 1) -> dict[str, Any]:
    """What a hand-written tool loop did, from its messages (from index `first`): turns, calls, errors, why it stopped."""
    turns = [m for m in messages[first:] if m["role"] == "assistant"]
    results = [m for m in messages[first:] if m["role"] == "tool"]
    errors = sum("error" in json.loads(m["content"]) for m in results if m["content"].startswith("{"))
    return {"turns": len(turns), "tool_calls": sum(len(m.get("tool_calls") or []) for m in turns),
            "errors_fed_back": errors, "stopped": "answered" if answer is not None else "max_turns"}


def where_it_went(messages: Sequence[dict[str, Any]], answer: str | None, facts: Iterable[str]) -> str:
    """Where a tool loop's answer came from, in one sentence: which functions ran, which facts their results held,
    which of those the answer stated — so a wrong answer says whether the calls or the writing lost a fact."""
    facts = [str(f) for f in facts]
    called = [c["function"]["name"] for m in messages if m["role"] == "assistant" for c in m.get("tool_calls") or []]
    results = " ".join(m["content"] for m in messages if m["role"] == "tool")
    fetched = [f for f in facts if f.lower() in results.lower()]
    stated = [f for f in facts if answer and f.lower() in answer.lower()]
    said = (f"the model called {', '.join(called) or 'no function'}; their results held {len(fetched)} of the "
            f"{len(facts)} facts {facts}; the answer states {len(stated)}")
    if answer is None:
        return said + ": the loop stopped at max_turns before any answer"
    if len(stated) == len(facts):
        return said + ": right"
    if len(fetched) < len(facts):
        return said + f": the calls never fetched {[f for f in facts if f not in fetched]}"
    return said + f": the calls fetched everything, and the answer lost {[f for f in facts if f not in stated]}"
