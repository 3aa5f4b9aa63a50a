"""The La Plateforme twin's rules: what a key of one tier may call, how fast, and what the API answers otherwise.

The rules are dated data with their sources (data/platform_tiers.json); the course endpoint applies them when it
is started with ``--platform-tier free`` (helpers/endpoint/platform.py), so a notebook run with ``BACKEND='mistral'``
and ``COURSE_API_URL`` pointed at it meets what a free-tier key meets: 401 without the key, 403 ``tier_not_allowed``
for a model the tier does not include, 429 past its rate. Everything it answers is the offline model's, and labelled
so (`label`).
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..paths import data_path

TIERS_FILE = "platform_tiers.json"


@dataclass(frozen=True)
class Tier:
    """One tier's rules, read from data/platform_tiers.json."""

    name: str
    label: str
    requests_per_second: float
    tokens_per_minute: int
    may_call: tuple[str, ...]
    may_not_call: tuple[str, ...]
    as_of: str

    def allows(self, model: str) -> bool:
        """True when a key of this tier may call `model` (a pattern in `may_not_call` wins over `may_call`)."""
        name = (model or "").strip().lower()
        if any(fnmatch.fnmatchcase(name, p) for p in self.may_not_call):
            return False
        return any(fnmatch.fnmatchcase(name, p) for p in self.may_call)

    @property
    def requests_per_minute(self) -> int:
        """The request limit as La Plateforme's `x-ratelimit-limit-req-minute` header states it."""
        return round(self.requests_per_second * 60)


@lru_cache(maxsize=1)
def rules() -> dict[str, Any]:
    """The whole data file (tiers, error bodies, sources), read once."""
    return json.loads(data_path(TIERS_FILE).read_text())


def tier_names() -> list[str]:
    """The tiers the data file describes (e.g. ['free'])."""
    return sorted(rules()["tiers"])


def tier(name: str) -> Tier:
    """The rules of tier `name`; a ValueError naming the known tiers otherwise."""
    data = rules()
    row = data["tiers"].get((name or "").strip().lower())
    if row is None:
        raise ValueError(f"platform tier {name!r} is not described in data/{TIERS_FILE}; "
                         f"known: {', '.join(tier_names())}")
    return Tier(name=name.strip().lower(), label=row["label"], requests_per_second=float(row["requests_per_second"]),
                tokens_per_minute=int(row["tokens_per_minute"]), may_call=tuple(row["may_call"]),
                may_not_call=tuple(row["may_not_call"]), as_of=data["as_of"])


def error_body(status: int) -> dict[str, Any]:
    """The body La Plateforme answers with for 401, 403 or 429 (as reported; see the data file's sources)."""
    return dict(rules()["errors"][str(status)]["body"])


def label(tier_name: str, model: str, url: str) -> str:
    """Who answers a run pointed at the course endpoint in this mode, e.g. 'La Plateforme twin (free tier) — …'."""
    return (f"La Plateforme twin ({tier_name} tier) — answers by {model} on the course endpoint at {url}, "
            f"not La Plateforme's; the tier's rules as of {rules()['as_of']}")


_described: dict[str, str] = {}


def describe_url(url: str, timeout_s: float = 2.0) -> str:
    """Who answers at the API URL `url` (COURSE_API_URL): the course endpoint in a tier's mode says so on /health;
    any other server is named by its URL, never as La Plateforme."""
    import httpx2 as httpx

    if url in _described:
        return _described[url]
    try:
        health = httpx.get(url.rstrip("/") + "/health", timeout=timeout_s).json()
    except Exception:  # not the course endpoint, or not up yet: say only where the answers come from
        health = {}
    if isinstance(health, dict) and health.get("platform_tier"):
        from ..labels import model_label

        _described[url] = label(str(health["platform_tier"]), model_label(str(health.get("model", "?"))), url)
        return _described[url]
    return f"the server at {url} (COURSE_API_URL), not La Plateforme"
