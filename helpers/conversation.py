"""A conversation's state for the chat UI: the message list is all there is — the API remembers nothing between calls.

Used by notebook 02 (its chat playground, `helpers.playground.chat_playground`). A :class:`Conversation` keeps the
system prompt and the turns so far, sends them all on every call through `client.chat.stream` (text arrives as it
is generated), and adds up tokens and cost at the dated prices. It needs nothing but an SDK-shaped client, so the
unit tests drive it with a fake one.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .catalog import _tokens, cost_or_none
from .tools import content_text


@dataclass
class Turn:
    """One exchange: what the user said, what came back, and what that call cost."""

    user: str
    assistant: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    seconds: float


@dataclass
class Conversation:
    """The system prompt, the turns so far, every request sent (for checking), and running totals."""

    client: Any
    model: str
    system: str = ""
    max_tokens: int = 64
    temperature: float = 0.0
    turns: list[Turn] = field(default_factory=list)
    requests: list[list[dict[str, str]]] = field(default_factory=list)

    @property
    def messages(self) -> list[dict[str, str]]:
        """What the next call will carry before the new user message: the system prompt, then every turn."""
        out = [{"role": "system", "content": self.system}] if self.system.strip() else []
        for t in self.turns:
            out += [{"role": "user", "content": t.user}, {"role": "assistant", "content": t.assistant}]
        return out

    def send(self, text: str, on_text: Callable[[str], None] | None = None) -> Turn:
        """Send the whole history plus `text`, streaming the answer piece by piece to `on_text`; keep the turn."""
        if not text.strip():
            raise ValueError("Type a message first: an empty user message is not sent.")
        request = [*self.messages, {"role": "user", "content": text}]
        self.requests.append(copy.deepcopy(request))
        pieces: list[str] = []
        usage = None
        started = time.perf_counter()
        for chunk in self.client.chat.stream(model=self.model, messages=request, max_tokens=self.max_tokens,
                                             temperature=self.temperature):
            # text, or a list of chunks (a reasoning model sends thinking chunks): keep the text
            delta = content_text(chunk.data.choices[0].delta.content) if chunk.data.choices else None
            if delta:
                pieces.append(delta)
                if on_text is not None:
                    on_text(delta)
            if chunk.data.usage:
                usage = chunk.data.usage
        p, c = _tokens(usage)
        turn = Turn(text, "".join(pieces), p, c, cost_or_none(self.model, prompt_tokens=p, completion_tokens=c),
                    time.perf_counter() - started)
        self.turns.append(turn)
        return turn

    def reset(self) -> None:
        """Forget every turn (the system prompt stays): the next call starts a new conversation."""
        self.turns.clear()
        self.requests.clear()

    @property
    def tokens(self) -> int:
        """Prompt + completion tokens of every call so far (each call pays for the whole history again)."""
        return sum(t.prompt_tokens + t.completion_tokens for t in self.turns)

    @property
    def cost_usd(self) -> float | None:
        """USD of every call so far at the dated prices; None when the model has no price."""
        costs = [t.cost_usd for t in self.turns]
        return None if any(c is None for c in costs) else sum(costs)
