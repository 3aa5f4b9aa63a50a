"""What counts as a good reply in notebook 02's conversation: the system prompt asks for one short sentence.

`tally.check(reply, **reply_rule(reply, earlier), label=...)` judges one turn in one call: a reply of several
sentences, or one that repeats an earlier reply word for word, is wrong; a single sentence is left for a reader to
judge (whether it answers the turn needs a reader).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any


def sentences(text: str) -> int:
    """How many sentences a reply has (at least one): ends of sentence followed by a space or the end."""
    return len(re.findall(r"[.!?](?=\s|$)", text.strip())) or 1


def reply_rule(reply: str, earlier: Sequence[str]) -> dict[str, Any]:
    """`Verdicts.check` arguments for one turn's reply, given the replies before it."""
    same_as = next((k for k, e in enumerate(earlier, 1) if e.strip() == reply.strip()), None)
    n = sentences(reply)
    if same_as or n > 1:
        why = (f"repeats turn {same_as}'s reply word for word, whatever this turn asked" if same_as
               else f"{n} sentences where the system prompt asks for one short sentence")
        return {"expect": lambda _text: (False, why), "definitive": True}
    return {"look_for": "one short sentence that answers this turn"}
