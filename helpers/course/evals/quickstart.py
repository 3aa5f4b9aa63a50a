"""What counts as right for the answers notebook 01 (API quickstart) shows: one rule per question.

Each rule is a set of `Verdicts.check` arguments, so the notebook judges an answer in one short call:
`tally.check(reply, **quickstart.RECALL, label="recall")`. A rule that is a function takes the answer's text and
returns `(right, how)`.
"""

from __future__ import annotations

import json
import re
from typing import Any

COLOURS = ("red", "orange", "yellow", "green", "blue", "indigo", "violet", "purple", "pink", "brown", "black", "white",
           "grey", "gray", "turquoise", "cyan", "magenta", "teal", "gold", "silver", "beige", "navy")


def colours_named(text: str) -> list[str]:
    """The colours a text names, once each ('gray' counted as 'grey')."""
    return sorted({"grey" if c == "gray" else c for c in COLOURS if re.search(rf"\b{c}\b", text.lower())})


def one_colour(text: str) -> tuple[bool, str]:
    """Right when the answer names exactly one colour, as asked (a list of four is not "one colour")."""
    named = colours_named(text)
    if len(named) == 1:
        return True, f"names one colour, {named[0]}"
    return False, f"names {len(named)} colours ({', '.join(named)}), not one" if named else "names no colour"


def counts_one_to_five(text: str) -> tuple[bool, str]:
    """Right when every number from 1 to 5 appears, as a digit or a word."""
    words = ("one", "two", "three", "four", "five")
    missing = [d for d, w in enumerate(words, 1) if not re.search(rf"\b({w}|{d})\b", text, re.I)]
    return (not missing, "counts one to five" if not missing else f"misses {missing}")


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def city_is_paris(text: str) -> tuple[bool, str]:
    """Right when the reply is a JSON object whose `city` is Paris."""
    data = _json(text)
    if not isinstance(data, dict):
        return False, "not a JSON object"
    if "city" not in data:
        return False, f"no city key (keys: {', '.join(data) or 'none'})"
    ok = str(data["city"]).strip().lower() == "paris"
    return ok, f"city {data['city']!r}" + ("" if ok else ", not 'Paris'")


PAYMENT_T1002 = {"transaction_id": "T1002", "amount_eur": 89.99, "status": "Pending"}  # what the sentence says


def payment_fields(text: str) -> tuple[bool, str]:
    """Right when the extracted payment matches the sentence: T1002, 89.99 euros, Pending."""
    data = _json(text)
    if not isinstance(data, dict):
        return False, "not a JSON object"
    wrong = {k: data.get(k) for k, v in PAYMENT_T1002.items()
             if not (isinstance(v, float) and isinstance(data.get(k), (int, float)) and abs(data[k] - v) <= 0.005)
             and data.get(k) != v}
    if not wrong:
        return True, "all three fields match the sentence"
    return False, "; ".join(f"{k} {v!r}, not {PAYMENT_T1002[k]!r}" for k, v in wrong.items())


_SAYS_NO = re.compile(r"^\W*no\b|cannot|can't|can ?not|not possible|irrevocable", re.I)


def says_no(text: str) -> tuple[bool, str]:
    """Right when the answer says no: it starts with "No", or says "cannot", "not possible" or "irrevocable"."""
    found = _SAYS_NO.search(text)
    return (True, f"says {found.group(0).strip()!r}") if found else (False, "does not say no (nor 'cannot')")


# `tally.check(reply, **RULE, label=...)`: an instant transfer cannot be recalled once confirmed (Harbourline's
# handbook, section 3.1; SEPA Instant alike)
RECALL = {"expect": says_no, "reject": ["you can recall", "yes, you can"]}
# one word asked: an answer cut at max_tokens before naming one colour already broke the format
ONE_COLOUR = {"expect": one_colour, "definitive": True}
COUNT_TO_FIVE = {"expect": counts_one_to_five}
JSON_CITY = {"expect": city_is_paris}
PAYMENT = {"expect": payment_fields}
