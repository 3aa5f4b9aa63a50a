"""Prompt patterns measured on labelled data: the course's customer-message set, answer parsers and scores.

Used by notebook 02 (one zero-shot vs few-shot example) and its deep dive deep/02a (the measured study). The
prompts themselves are written in the notebooks, where a learner can read and copy them; this module loads the labelled set, runs a pattern over it (timed and priced by
:func:`helpers.catalog.complete`), and scores the answers: label accuracy, field-level F1, latency p50.

A pattern's requests can be sent `concurrency` at a time from a small thread pool: the course endpoint decodes
concurrent requests together (continuous batching), La Plateforme answers them in parallel within its rate limit.
Answers come back in the rows' order either way; latencies measured under concurrency include the wait for the
batch, and `summary` says at which concurrency they were measured.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ...catalog import Reply, complete
from ...paths import data_path

MESSAGES_FILE = "support_messages.csv"
INTENTS = ("card", "fraud", "refund", "transfer", "fees", "login")
FIELDS = ("amount", "date", "transaction_id")


def load_messages(name: str = MESSAGES_FILE):
    """The labelled customer messages (data/support_messages.csv): split, intent, text, the fields to extract, …

    Absent fields are None; `injected_label` names the label an injected instruction asks for (None for most rows).
    """
    import pandas as pd

    frame = pd.read_csv(data_path(name), dtype={"date": str, "transaction_id": str, "injected_label": str,
                                                 "clean_text": str})
    frame = frame.astype(object).where(frame.notna(), None)
    frame["amount"] = pd.Series([None if a is None else float(a) for a in frame["amount"]], index=frame.index,
                                dtype=object)
    frame["ambiguous"] = frame["ambiguous"].astype(bool)
    bad = set(frame["intent"]) - set(INTENTS)
    if bad:
        raise ValueError(f"{name}: unknown intent(s) {sorted(bad)}; the labels are {INTENTS}")
    return frame


def pick(test, n: int, seed: int = 0):
    """`n` test messages: every one carrying an injection (the injection section needs them), then a seeded sample."""
    if n >= len(test):
        return test
    injected = test[test["injected_label"].notna()]
    if n < len(injected):
        raise ValueError(f"n={n} is fewer than the {len(injected)} injected messages; ask for at least that many")
    rest = test.drop(injected.index).sample(n - len(injected), random_state=seed)
    return test.loc[sorted([*injected.index, *rest.index])]


# ---------------------------------------------------------------- reading answers
LABEL_WORD = re.compile(r"\b(" + "|".join(INTENTS) + r")\b")  # a label as a whole word, in lower-case text


def parse_label(text: str | None) -> str | None:
    """The intent an answer names: the JSON field "intent" if it is JSON, else the first label word in the text."""
    data = parse_json(text)
    if isinstance(data, dict) and str(data.get("intent", "")).lower() in INTENTS:
        return str(data["intent"]).lower()
    hits = [(m.start(), m.group(1)) for m in LABEL_WORD.finditer((text or "").lower())]
    return min(hits)[1] if hits else None


def label_first(text: str | None) -> bool:
    """True when the answer gives its label as the answer: JSON, or a label within its first 4 words (no label at
    all counts too: nothing was given late)."""
    said, head = parse_label(text), " ".join((text or "").lower().split()[:4])
    return said is None or said in head or isinstance(parse_json(text), dict)


def lists_labels(text: str | None) -> bool:
    """True when the answer's first words name three labels or more: it repeats the rule's list, it does not choose."""
    head = " ".join((text or "").lower().split()[:8])
    return len(set(LABEL_WORD.findall(head))) >= 3


def is_label(intent: str):
    """The verdict rule for a label answer: right when the first label it names is `intent`, given as the answer (JSON,
    or within its first 4 words: "You can't pay back a refund of" names none there) (`tally.check(r, rule)`).
    A wrong label, or 4 words with no label, is wrong even when cut: more tokens cannot put one first."""

    def rule(text: str) -> tuple[bool, str]:
        said, words = parse_label(text), len((text or "").split())
        if lists_labels(text) and not isinstance(parse_json(text), dict):
            return False, f"lists the labels instead of choosing one; the data says {intent!r}", True
        if said is not None and label_first(text):
            return said == intent, f"answers {said!r}" + ("" if said == intent else f"; the data says {intent!r}")
        return False, f"no label in its first 4 words; the data says {intent!r}", words >= 4

    return rule


def what_each_pattern_did(shots: Any, shot_labels: Sequence[str]) -> list[str]:
    """One sentence per pattern saying what its answers show (notebook 02): how many are right, how many began a
    sentence instead of a label, and whether every answer named one label (an example's: the model copies it).

    `shots` has one row per answer with columns `pattern`, `intent`, `answer` and `verdict` (a verdict's text)."""
    lines = []
    for name, g in shots.groupby("pattern", sort=False):
        n, right = len(g), int(g.verdict.str.startswith("✓").sum())
        said = g.answer.map(parse_label)
        late = sum(parse_label(a) is None or not label_first(a) for a in g.answer)
        parts = [f"{name}: right {right} of {n}"]
        if late:
            parts.append(f"{late} of {n} with no label in the first 4 words: the model began a sentence of its own "
                         "where the rule asks for one word")
        if n > 1 and said.notna().all() and said.nunique() == 1:
            label = said.iloc[0]
            shot = [k for k, lab in enumerate(shot_labels, 1) if lab == label]
            whose = (f"the label of few-shot example {shot[-1]}: the model copies an example's answer instead of "
                     "classifying" if shot else "one label for every message: it does not tell them apart")
            parts.append(f"it named {label!r} for all {n} messages, {whose}" +
                         (f" (right only where the data says {label!r} too)" if right else ""))
        lines.append("; ".join(parts) + ".")
    return lines


def what_the_prefix_did(prefixed: Any, zero_shot: Any, prefix: str) -> str:
    """The prefix's effect in words (notebook 02): how many answers give a label first with it, beside the same
    messages without it (`zero_shot`: section 2's zero-shot rows), and whether the text comes back with it in front.

    Both frames have an `answer` column; `prefixed` has a `verdict` column too (a verdict's text)."""
    def first(answers: Any) -> int:
        return sum(parse_label(a) is not None and label_first(a) and not lists_labels(a) for a in answers)

    n, right = len(prefixed), int(prefixed.verdict.str.startswith("✓").sum())
    starts = int(prefixed.answer.str.startswith(prefix).sum())
    echo = ("every answer comes back with the prefix in front: strip it before use" if starts == n else
            "no answer comes back with the prefix in front" if starts == 0 else
            f"{starts} of {n} answers come back with the prefix in front: strip it only where it is")
    listed = int(prefixed.answer.map(lists_labels).sum())
    listing = f", {listed} only list{'s' * (listed == 1)} the rule's labels" if listed else ""
    return (f"With the prefix {prefix!r}, {first(prefixed.answer)} of {n} answers give one label first ({right} the "
            f"right one){listing}; without it (section 2's zero-shot), {first(zero_shot.answer)} of {len(zero_shot)} "
            f"did. {echo[0].upper()}{echo[1:]}.")


def fields_are(gold: dict[str, Any]):
    """The verdict rule for an extraction answer: right when amount, date and transaction id all match `gold`."""

    def rule(text: str) -> tuple[bool, str]:
        got = parse_json(text)
        if not isinstance(got, dict):
            return False, "holds no JSON object"
        off = [f"{f} {got.get(f)!r}, not {gold[f]!r}" for f in FIELDS if not all_fields_right({**gold, f: got.get(f)}, gold)]
        return not off, "; ".join(off) or "all fields right"

    return rule


def parse_json(text: str | None) -> Any:
    """The first JSON object in the text (models often wrap it in prose or ``` fences), or None."""
    text = text or ""
    start = text.find("{")
    while start != -1:
        try:
            return json.JSONDecoder().raw_decode(text[start:])[0]
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
    return None


def _same(field: str, got: Any, want: Any) -> bool:
    if field == "amount":
        try:
            return abs(float(str(got).replace(",", "")) - float(want)) < 0.005
        except (TypeError, ValueError):
            return False
    return str(got).strip().upper() == str(want).strip().upper()


def _given(value: Any) -> bool:
    return value is not None and str(value).strip().lower() not in ("", "null", "none", "n/a")


def field_counts(predicted: Any, gold: dict[str, Any]) -> tuple[int, int, int]:
    """(correct, predicted, expected) field counts for one message: a field counts when it is present (not null)."""
    pred = predicted if isinstance(predicted, dict) else {}
    correct = sum(_given(pred.get(f)) and _given(gold[f]) and _same(f, pred[f], gold[f]) for f in FIELDS)
    return correct, sum(_given(pred.get(f)) for f in FIELDS), sum(_given(gold[f]) for f in FIELDS)


def f1(correct: int, predicted: int, expected: int) -> float:
    """Field-level F1: harmonic mean of precision (correct / predicted) and recall (correct / expected)."""
    if correct == 0:
        return 0.0
    p, r = correct / predicted, correct / expected
    return 2 * p * r / (p + r)


def all_fields_right(predicted: Any, gold: dict[str, Any]) -> bool:
    """True when every field is right, absent ones included (null where the message has none)."""
    pred = predicted if isinstance(predicted, dict) else None
    if pred is None:
        return False
    return all((_same(f, pred.get(f), gold[f]) if _given(gold[f]) else not _given(pred.get(f))) for f in FIELDS)


# ---------------------------------------------------------------- running a pattern
@dataclass
class Answer:
    """One message through one pattern: the reply (text, tokens, seconds, USD) and what was parsed from it."""

    id: str
    reply: Reply
    parsed: Any
    correct: bool
    concurrency: int = 1  # requests in flight while this one was answered (its latency includes that wait)


def run_pattern(client: Any, model: str, build: Callable[[str], list[dict]], rows, *,
                read: Callable[[str], Any], check: Callable[[Any, Any], bool], concurrency: int = 1,
                **options: Any) -> list[Answer]:
    """Send `build(text)` for every row (with `options`, e.g. max_tokens, response_format), `concurrency` requests at
    a time; parse and check each answer. Answers are in the rows' order."""
    if int(concurrency) < 1:
        raise ValueError(f"concurrency must be 1 or more, got {concurrency}")
    items = [row for _, row in rows.iterrows()]

    def one(row: Any) -> Answer:
        reply = complete(client, model, build(row["text"]), **options)
        parsed = read(reply.text)
        return Answer(row["id"], reply, parsed, bool(check(parsed, row)), int(concurrency))

    if int(concurrency) == 1:
        return [one(row) for row in items]
    with ThreadPoolExecutor(max_workers=int(concurrency)) as pool:
        return list(pool.map(one, items))


def p50(values: Sequence[float]) -> float:
    """The median."""
    return float(statistics.median(values)) if values else float("nan")


def summary(answers: Sequence[Answer]) -> dict[str, Any]:
    """Per pattern: accuracy, prompt tokens per message, USD per message (None without a price), latency p50 and the
    concurrency it was measured at (1: each request alone)."""
    n = len(answers)
    costs = [a.reply.cost_usd for a in answers]
    return {
        "messages": n,
        "accuracy": sum(a.correct for a in answers) / n,
        "prompt_tokens_per_message": sum(a.reply.prompt_tokens for a in answers) / n,
        "completion_tokens_per_message": sum(a.reply.completion_tokens for a in answers) / n,
        "usd_per_message": None if any(c is None for c in costs) else sum(costs) / n,
        "latency_p50_s": p50([a.reply.latency_s for a in answers]),
        "latency_at_concurrency": max((a.concurrency for a in answers), default=1),
    }


# ---------------------------------------------------------------- classifying by the model's own probabilities
def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def labels_of(token_text: str, labels: Sequence[str] = INTENTS) -> list[str]:
    """The labels a generated token could be the start of: its text (stripped, lower-case) and the label begin alike
    — the token is the label's first letters ('F', 'Ref', ' card') or the label followed by more ('Cards')."""
    t = token_text.strip().lower()
    if not t or not t[0].isalpha():
        return []
    return [label for label in labels if label.startswith(t) or t.startswith(label)]


def label_probabilities(alternatives: Sequence[Any], labels: Sequence[str] = INTENTS,
                        prefix: str = "") -> tuple[dict[str, float], dict[str, float]]:
    """({label: probability}, {shared token text: probability}) from one token's `top_logprobs`.

    A token that starts only one label adds its probability to that label; a token several labels share ('F' for
    fraud and fees) is returned apart, for `classify_by_logprobs` to resolve. `prefix`: text already written (a
    shared token being resolved), read in front of each alternative. Labels absent from the alternatives get 0."""
    import math

    scores = {label: 0.0 for label in labels}
    shared: dict[str, float] = {}
    for alt in alternatives:
        text, p = str(_field(alt, "token")), math.exp(float(_field(alt, "logprob")))
        fits = labels_of(prefix + text, labels)
        if len(fits) == 1:
            scores[fits[0]] += p
        elif fits:
            shared[prefix + text] = shared.get(prefix + text, 0.0) + p
    return scores, shared


def _continued(messages: list[dict], text: str) -> list[dict]:
    """The conversation with `text` written at the start of the answer: an assistant `prefix` (extended, when the
    conversation already ends with one)."""
    last = messages[-1] if messages else {}
    if last.get("role") == "assistant" and last.get("prefix"):
        return [*messages[:-1], {**last, "content": (last.get("content") or "") + text}]
    return [*messages, {"role": "assistant", "content": text, "prefix": True}]


@dataclass
class ScoredLabel:
    """One message classified by probabilities: the most likely label (None: no label among the alternatives)."""

    id: str
    label: str | None
    probability: float  # of the chosen label's first token(s), as the model gave them
    label_mass: float  # probability on any label at all (the rest went to other first tokens, e.g. "The")
    correct: bool
    requests: int  # 1, plus one per shared first token that was resolved
    prompt_tokens: int


def classify_by_logprobs(client: Any, model: str, build: Callable[[str], list[dict]], rows, *,
                         labels: Sequence[str] = INTENTS, top_logprobs: int = 20, concurrency: int = 1,
                         **options: Any) -> list[ScoredLabel]:
    """Classify each row by the likelihood of each label's first token, read from `logprobs` (`max_tokens=1`).

    The rule for labels whose first tokens collide: a token several labels share ('F' → fraud, fees) is resolved
    when it could change the winner — one more `max_tokens=1` call with that token as an assistant `prefix`, and its
    probability is split by what the model would write next (p('F') × p('ra' | 'F') for fraud). A token still shared
    after that is split evenly. A label whose first token is not among the `top_logprobs` alternatives scores 0."""
    items = [row for _, row in rows.iterrows()]

    def ask(messages: list[dict]) -> tuple[list[Any], int]:
        r = client.chat.complete(model=model, messages=messages, max_tokens=1, logprobs=True,
                                 top_logprobs=top_logprobs, **options)
        lp = r.choices[0].logprobs
        content = list(_field(lp, "content") or []) if lp is not None else []
        if not content:
            raise ValueError(f"{model} returned no logprobs for logprobs=True: this server or model does not give them")
        return list(_field(content[0], "top_logprobs") or []), int(r.usage.prompt_tokens or 0)

    def one(row: Any) -> ScoredLabel:
        messages = build(row["text"])
        alternatives, prompt_tokens = ask(messages)
        scores, shared = label_probabilities(alternatives, labels)
        requests = 1
        for text, p in sorted(shared.items(), key=lambda kv: -kv[1]):
            fits = labels_of(text, labels)
            rest = max((s for label, s in scores.items() if label not in fits), default=0.0)
            if max(scores[label] for label in fits) + p <= rest:
                continue  # even all of it could not make one of its labels the winner
            more, n = ask(_continued(messages, text))
            requests, prompt_tokens = requests + 1, prompt_tokens + n
            split, still = label_probabilities(more, labels, prefix=text)
            for label in fits:  # p(shared token) × p(next token | it): the likelihood of the label's first tokens
                share = split[label] + sum(q / len(labels_of(t, labels)) for t, q in still.items()
                                           if label in labels_of(t, labels))
                scores[label] += p * share
        best = max(scores, key=scores.get)
        label = best if scores[best] > 0 else None
        return ScoredLabel(row["id"], label, scores[best], sum(scores.values()), label == row["intent"], requests,
                           prompt_tokens)

    if int(concurrency) <= 1:
        return [one(row) for row in items]
    with ThreadPoolExecutor(max_workers=int(concurrency)) as pool:
        return list(pool.map(one, items))
