"""Model tiers, dated prices, the cost of a call, and choosing a model: try the cheapest, escalate only on failure.

Prices change, so they live in data/models.csv with the date and source of each row, not in code. 03's tasks and what counts as a right answer are in `helpers/course/evals/selection.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from .settings import data_path
from .tools import content_text

MODELS_FILE = "models.csv"
DEFAULT_TIERS = ("mistral-small-latest", "mistral-medium-latest", "mistral-large-latest")


class UnknownModelError(KeyError):
    """A model alias the price table does not list; the message names the ones it does."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class ModelTier:
    """One row of the dated price table."""

    alias: str  # the name sent as `model=`: an alias (`-latest`, moves when Mistral releases) or a dated id (pinned)
    model: str
    tier_rank: int  # capability order among current chat models: 1 = smallest; 0 = not compared (embeddings, retired)
    best_for: str
    input_usd_per_1m: float
    output_usd_per_1m: float
    cached_input_usd_per_1m: float | None  # prompt tokens served from the prompt cache (None: no cached price listed)
    context_window: int
    dated_id: str  # the dated id the alias pointed to on `prices_as_of` (itself, for a dated id)
    retirement_date: str | None  # after it, the id fails (None: none announced in the docs read)
    prices_as_of: str
    source: str


@lru_cache(maxsize=4)
def _load(name: str) -> tuple[ModelTier, ...]:
    import pandas as pd

    frame = pd.read_csv(data_path(name), dtype={"prices_as_of": str, "retirement_date": str})
    frame = frame.astype(object).where(frame.notna(), None)  # an empty cell is None, not NaN
    return tuple(ModelTier(**{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()})
                 for row in frame.to_dict("records"))


def load_tiers(name: str = MODELS_FILE) -> dict[str, ModelTier]:
    """The price table (data/models.csv) as {alias: ModelTier}."""
    return {t.alias: t for t in _load(name)}


def price_table(name: str = MODELS_FILE):
    """The price table as a DataFrame for display: alias, best for, USD per 1M tokens in/out, context, date, source."""
    import pandas as pd

    return pd.DataFrame([t.__dict__ for t in _load(name)]).set_index("alias")


def tier(alias: str) -> ModelTier:
    """The price-table row for a model alias, with a clear error for one it does not list."""
    tiers = load_tiers()
    if alias not in tiers:
        raise UnknownModelError(
            f"No price for model {alias!r}. The table (data/{MODELS_FILE}) lists: {', '.join(tiers)}. "
            "Add a dated row for it, or use one of those aliases."
        )
    return tiers[alias]


def cached_tokens(usage: Any) -> int | None:
    """Prompt tokens served from the prompt cache: `usage.prompt_tokens_details.cached_tokens`, where La Plateforme
    reports them (its prompt-caching docs, 2026-08-21); None when the answer does not say. SDK 3.7.0's `UsageInfo`
    has no typed field for it and keeps it as an extra attribute (a dict)."""
    if usage is None:
        return None
    details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else getattr(usage, "prompt_tokens_details",
                                                                                          None)
    if isinstance(details, dict):
        value = details.get("cached_tokens")
    else:
        value = getattr(details, "cached_tokens", None)
    return int(value) if isinstance(value, (int, float)) else None


def _tokens(usage: Any) -> tuple[int, int]:
    if usage is None:
        return 0, 0
    if isinstance(usage, dict):
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0)


def cost_usd(model: str, usage: Any = None, *, prompt_tokens: int | None = None,
             completion_tokens: int | None = None, cached: int | None = None) -> float:
    """What a call costs on La Plateforme: uncached prompt tokens × input price + cached prompt tokens × cached price
    + completion tokens × output price. Cached tokens come from `usage` (see `cached_tokens`) unless given."""
    p, c = _tokens(usage)
    if prompt_tokens is not None:
        p = prompt_tokens
    if completion_tokens is not None:
        c = completion_tokens
    k = cached if cached is not None else (cached_tokens(usage) or 0)
    if p < 0 or c < 0 or k < 0:
        raise ValueError(f"Token counts cannot be negative (prompt={p}, completion={c}, cached={k}).")
    if k > p:
        raise ValueError(f"cached tokens ({k}) cannot exceed prompt tokens ({p}).")
    t = tier(model)
    cached_price = t.cached_input_usd_per_1m if t.cached_input_usd_per_1m is not None else t.input_usd_per_1m
    return ((p - k) * t.input_usd_per_1m + k * cached_price + c * t.output_usd_per_1m) / 1_000_000


def cost_or_none(model: str, usage: Any = None, **tokens: int | None) -> float | None:
    """What a call costs, or None when the price table has no row for `model` (the call itself still worked)."""
    return cost_usd(model, usage, **tokens) if model in load_tiers() else None


def show_cost(cost: float | None, digits: int = 8) -> str:
    """A cost for display: '$0.00001234', or 'n/a (not in the price table)' for a model without a price."""
    return "n/a (not in the price table)" if cost is None else f"${cost:.{digits}f}"


def by_price(aliases: Sequence[str]) -> list[str]:
    """Aliases from cheapest to dearest (input + output price per 1M tokens)."""
    return sorted(aliases, key=lambda a: (tier(a).input_usd_per_1m + tier(a).output_usd_per_1m, tier(a).tier_rank))


def escalation_ladder(aliases: Sequence[str]) -> list[str]:
    """Cheapest first, dropping any tier that costs more than a more capable one (it is never worth trying)."""
    ladder: list[str] = []
    for alias in by_price(aliases):
        if all(tier(alias).tier_rank > tier(prev).tier_rank for prev in ladder):
            ladder.append(alias)
    return ladder


# ---------------------------------------------------------------- one call, measured
@dataclass
class Reply:
    """A chat completion with what it cost: text, token usage, seconds, USD (at the dated price of `model`).

    `cost_usd` is None for a model the price table does not list (the call itself still succeeded).
    """

    model: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    cost_usd: float | None
    finish_reason: str | None = None
    response: Any = field(default=None, repr=False)
    cached_tokens: int | None = None  # prompt tokens the server served from its prompt cache (None: not reported)


def complete(client: Any, model: str, messages: list[dict[str, Any]], **kwargs: Any) -> Reply:
    """Call `client.chat.complete`, timing it and pricing its usage from the dated table."""
    started = time.perf_counter()
    response = client.chat.complete(model=model, messages=messages, **kwargs)
    latency = time.perf_counter() - started
    choice = response.choices[0]
    text = content_text(choice.message)
    p, c = _tokens(response.usage)
    return Reply(model=model, text=text, prompt_tokens=p, completion_tokens=c, latency_s=latency,
                 cost_usd=cost_or_none(model, prompt_tokens=p, completion_tokens=c),
                 finish_reason=str(choice.finish_reason) if choice.finish_reason is not None else None,
                 response=response, cached_tokens=cached_tokens(response.usage))


# ---------------------------------------------------------------- checking answers


# ---------------------------------------------------------------- escalation
@dataclass(frozen=True)
class Attempt:
    """One try of a task on one model: was the answer right, what did it cost."""

    model: str
    correct: bool
    cost_usd: float
    latency_s: float
    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None  # "length": cut off at max_tokens, so the verdict says "cut", not "wrong"

    def priced_as(self, model: str) -> Attempt:
        """The same answer billed at another model's dated price (when one local model serves every alias)."""
        cost = cost_or_none(model, prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens)
        return replace(self, model=model, cost_usd=cost or 0.0)


@dataclass(frozen=True)
class Escalation:
    """Models tried in order until one passed the check (or the ladder ran out)."""

    attempts: list[Attempt]

    @property
    def solved_by(self) -> str | None:
        return next((a.model for a in self.attempts if a.correct), None)

    @property
    def cost_usd(self) -> float:
        return sum(a.cost_usd for a in self.attempts)


def escalate(attempt: Callable[[str], Attempt], models: Sequence[str]) -> Escalation:
    """Try the cheapest worthwhile model first; move up the ladder only when the check fails."""
    tried: list[Attempt] = []
    for model in escalation_ladder(models):
        result = attempt(model)
        tried.append(result)
        if result.correct:
            break
    return Escalation(tried)


