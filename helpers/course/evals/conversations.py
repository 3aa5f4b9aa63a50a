"""What counts as a good reply in notebook 02's conversation: the system prompt asks for one short sentence.

`tally.check(reply, **reply_rule(reply, earlier, history), label=...)` judges one turn in one call: a reply of
several sentences, one that repeats an earlier reply word for word, or one that names a person nobody in the
conversation named (the model's invention, e.g. "Amara, …" to a user who said she is Ana) is wrong; a single
sentence is left for a reader to judge (whether it answers the turn needs a reader). `recalls(fact, messages)`
judges an answer that should repeat a fact from the first turn, and says too when it invents a name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

# words that open a reply with a comma ("Yes, …") or follow "Hi" without being anyone's name
_NOT_NAMES = frozenset(
    "yes no sure hi hello hey dear certainly absolutely sorry unfortunately however thanks thank okay ok well great "
    "indeed alright understood there everyone again also first then now today currently please note".split())
# where a reply names a person: its first word before a comma (addressing someone), or after a greeting or "I'm"
_NAMED = re.compile(r"^\W*([A-Z][a-z]{2,}),|\b(?:I'm|I am|[Mm]y name is|[Dd]ear|[Hh]i|[Hh]ello|[Hh]ey)[, ]+([A-Z][a-z]{2,})\b")


def sentences(text: str) -> int:
    """How many sentences a reply has (at least one): ends of sentence followed by a space or the end."""
    return len(re.findall(r"[.!?](?=\s|$)", text.strip())) or 1


def invented_names(reply: str, messages: Iterable[dict[str, Any]] = ()) -> list[str]:
    """The names a reply addresses or introduces that no system or user message said (an assistant's own earlier
    reply does not count: it may have invented them first)."""
    said = " ".join(str(m.get("content") or "") for m in messages if m.get("role") != "assistant").lower()
    found = [a or b for a, b in _NAMED.findall(reply)]
    return sorted({n for n in found if n.lower() not in _NOT_NAMES and not re.search(rf"\b{n.lower()}\b", said)})


def _invented(names: list[str]) -> str:
    return f"invented name{'s' * (len(names) > 1)} {', '.join(map(repr, names))}" if names else ""


def reply_rule(reply: str, earlier: Sequence[str], messages: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """`Verdicts.check` arguments for one turn's reply, given the replies before it and the messages sent so far."""
    same_as = next((k for k, e in enumerate(earlier, 1) if e.strip() == reply.strip()), None)
    n = sentences(reply)
    why = [f"repeats turn {same_as}'s reply word for word, whatever this turn asked" if same_as else "",
           f"{n} sentences where one was asked" if n > 1 and not same_as else "",
           _invented(invented_names(reply, messages))]
    if any(why):
        why_text = "; ".join(w for w in why if w)
        return {"expect": lambda _text: (False, why_text), "definitive": True}
    return {"look_for": "one short sentence that answers this turn"}


def recalls(fact: str, messages: Iterable[dict[str, Any]] = ()):
    """The verdict rule for an answer that should repeat `fact`: right when it says it and invents no name (an
    invented name is wrong even in an answer cut at max_tokens: more tokens cannot unsay it)."""
    messages = list(messages)

    def rule(text: str) -> tuple[bool, str]:
        said = re.search(rf"(?<!\w){re.escape(fact)}(?!\w)", text, flags=re.I) is not None
        invented = _invented(invented_names(text, messages))
        how = f"{'says' if said else 'does not say'} {fact!r}" + (f"; {invented}" if invented else "")
        return said and not invented, how, bool(invented)

    return rule



def what_trimming_did(remedies: Any, budget: int, fact: str) -> str:
    """The budget table's lesson in words (notebook 02): which variant fits the budget, what fitting cost (the fact),
    and which answers named the fact. `remedies`: one row per variant (the index, the whole history first), with
    columns `prompt_tokens`, `within budget`, `fact sent` and `verdict` (a verdict's text)."""
    rows = list(remedies.iterrows())
    (whole, w), trimmed = rows[0], rows[1:]
    out = [f"The {whole} {'sends' if w['fact sent'] else 'does not send'} {fact} and is "
           f"{'within' if w['within budget'] else 'over'} the {budget}-token budget ({w.prompt_tokens} tokens)."]
    over = [f"the {name} ({r.prompt_tokens})" for name, r in trimmed if not r["within budget"]]
    fits = [(name, r) for name, r in trimmed if r["within budget"]]
    if over:
        out.append(f"Still over: {', '.join(over)}.")
    if fits:
        name, r = fits[0]
        out.append(f"Keeping only the {name} fits ({r.prompt_tokens} tokens)" + (
            "." if r["fact sent"] else f" but no longer sends {fact}: to fit the budget, the fact had to go."))
    else:
        out.append("Nothing kept fits: raise BUDGET_TOKENS, shorten the system prompt, or summarise older turns "
                   "into one message.")
    named = [name for name, r in rows if str(r.verdict).startswith("✓")]
    out.append(f"Answers that name {fact}: {', '.join(named) or 'none'}"
               + ("" if named or not w["fact sent"] else " (even where it was sent: recalling it is the model's part)")
               + ".")
    return " ".join(out)


def what_replies_invented(replies: Sequence[str], messages: Iterable[dict[str, Any]], model: str) -> str:
    """The names the replies made up, in words (notebook 02): how many replies name someone no message sent named."""
    messages = list(messages)
    found = [invented_names(r, messages) for r in replies]
    names = sorted({n for f in found for n in f})
    if not names:
        return f"No reply names anyone the messages did not name ({len(replies)} checked)."
    hits = sum(bool(f) for f in found)
    what = "a name" if len(names) == 1 else "names"
    return (f"{hits} of {len(replies)} replies name {', '.join(map(repr, names))}, {what} no message sent holds: "
            f"{model} made it up (each such reply is judged wrong, cut or not).")


def invented_numbers(answer: str, source: str) -> str:
    """The numbers an answer wrote that its source message does not contain, in words (notebook 02's prefix)."""
    numbers = re.compile(r"[A-Z]?\d+(?:[.,]\d+)?")  # 150.00, 2026, T1204
    new = [n for n in dict.fromkeys(numbers.findall(answer)) if n not in numbers.findall(source)]
    if not new:
        return "Every number in the answer is in the message."
    return (f"Numbers in the answer that the message does not contain: {', '.join(new)} (the message's: "
            f"{', '.join(numbers.findall(source)) or 'none'}): the model made them up.")
