"""Notebook 03's four model-selection tasks and what counts as a right answer to each (the eval data, with checkers).

The lesson — try the cheapest worthwhile model first, escalate when the check fails — is `helpers.catalog.escalate`;
this module holds the tasks it is measured on and `run_task`, which sends one and judges the reply.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ...catalog import Attempt, complete, tier
from ..verdicts import Verdict, judge

_NUMBER = re.compile(r"(?<![\w.])(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")


def numbers_in(text: str) -> list[float]:
    """Every number written in the text, e.g. 'T1001 paid 1,125.50 on 2021-10-16' → [1125.5, 2021.0, 10.0, 16.0].

    Ids such as T1001 are not numbers; dates split into their parts.
    """
    return [float(m.replace(",", "")) for m in _NUMBER.findall(text or "")]


def closest_payments(payments) -> dict[str, Any]:
    """Ground truth for 'which two amounts are closest, and how many days apart were they paid?' (pandas)."""
    import pandas as pd

    df = payments.assign(payment_date=pd.to_datetime(payments["payment_date"])).sort_values("payment_amount")
    gaps = df["payment_amount"].diff()
    j = int(gaps.to_numpy()[1:].argmin()) + 1
    a, b = df.iloc[j - 1], df.iloc[j]
    return {"ids": (a["transaction_id"], b["transaction_id"]),
            "amounts": (float(a["payment_amount"]), float(b["payment_amount"])),
            "gap": round(float(b["payment_amount"] - a["payment_amount"]), 2),
            "days_apart": abs(int((b["payment_date"] - a["payment_date"]).days))}


def check_closest_answer(text: str, truth: dict[str, Any], all_amounts: Sequence[float]) -> bool:
    """Right answer to the closest-amounts task: names exactly the two right amounts (of all in the table) and the days.

    Echoing the whole table mentions every amount, so it fails.
    """
    found = numbers_in(text)
    named = {a for a in all_amounts if any(abs(f - a) <= 0.005 for f in found)}
    return named == set(truth["amounts"]) and any(abs(f - truth["days_apart"]) < 1e-9 for f in found)


def json_fields_match(text: str, expected: dict[str, Any]) -> bool:
    """True when the text is a JSON object whose fields equal `expected` (numbers within 0.005, text case-blind)."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return False
    if not isinstance(data, dict):
        return False
    for key, want in expected.items():
        got = data.get(key)
        if isinstance(want, (int, float)) and not isinstance(want, bool):
            try:
                if abs(float(got) - want) > 0.005:  # type: ignore[arg-type]
                    return False
            except (TypeError, ValueError):
                return False
        elif str(got).strip().lower() != str(want).strip().lower():
            return False
    return True



def closest_misses(text: str, truth: dict[str, Any], all_amounts: Sequence[float]) -> str:
    """Why an answer to the closest-amounts task fails: the amounts it names and whether it gives the days."""
    found = numbers_in(text)
    named = sorted(a for a in all_amounts if any(abs(f - a) <= 0.005 for f in found))
    days = any(abs(f - truth["days_apart"]) < 1e-9 for f in found)
    want = " and ".join(map(str, truth["amounts"]))
    return f"names {named or 'no amount of the table'}, not {want}" + ("" if days else f"; no {truth['days_apart']} days")


def json_misses(text: str, expected: dict[str, Any]) -> str:
    """Why an extraction fails: not JSON, or which fields differ from `expected` (read leniently from broken JSON)."""
    try:
        data = json.loads(text)
        broken = ""
    except (json.JSONDecodeError, TypeError):  # a cut or malformed object: read the "key": value pairs it has
        data = {m[0]: m[1] for m in re.findall(r'"(\w+)"\s*:\s*"?([^",}]*)', text or "")}
        broken = "not valid JSON; "
    if not isinstance(data, dict):
        return "not a JSON object"
    wrong = [f"{k}={data.get(k)!r}" for k, v in expected.items() if not json_fields_match(json.dumps({k: data.get(k)}), {k: v})]
    return broken + (f"wrong or missing: {', '.join(wrong)}" if wrong else "fields right")


@dataclass(frozen=True)
class Task:
    """A model-selection task: the messages to send, extra call options, and a checker for the answer."""

    name: str
    why: str
    messages: list[dict[str, Any]]
    check: Callable[[str], bool]
    options: dict[str, Any] = field(default_factory=dict)
    definitive: bool = False  # a failed check is wrong even when cut (one word asked: a begun sentence cannot pass)
    explain: Callable[[str], str] | None = None  # why an answer fails, said in its verdict

    def expect(self, text: str) -> tuple[bool, str]:
        """This task's checker as a verdict rule: (passes?, how), for `tally.check(reply, task.expect, ...)`."""
        ok = bool(self.check(text))
        if ok or not self.explain:
            return ok, f"{'passes' if ok else 'fails'} the {self.name} checker"
        return ok, self.explain(text)

    def verdict(self, attempt: Attempt) -> Verdict:
        """An attempt at this task as a verdict: right, wrong, or cut off at max_tokens before it could pass."""
        return judge(attempt.text, lambda _: (attempt.correct, self.expect(attempt.text)[1]),
                     finish_reason=attempt.finish_reason, definitive=self.definitive)


ROUTES = ("cards", "payments", "disputes", "fraud", "fees")


def model_selection_tasks(payments) -> list[Task]:
    """The four tasks of notebook 03 (classify, extract, compose, reason over the payments table), with checkers."""
    truth = closest_payments(payments)
    table = payments.to_csv(index=False)
    email_id = "T1002"
    fields = {"customer_id": "C042", "transaction_id": "T1007", "amount": 49.90, "currency": "EUR"}
    return [
        Task(
            "classification",
            f"route a customer message to one of {len(ROUTES)} teams ({', '.join(ROUTES)}), in one word",
            [{"role": "system", "content": f"Route the customer's message to one team. Reply with one word: "
                                           f"{', '.join(ROUTES)}."},
             {"role": "user", "content": "Someone in another country just paid for a hotel with my card. "
                                         "I still have the card in my wallet!"}],
            lambda text: text.strip().strip(".").lower() == "fraud",
            {"max_tokens": 16},  # one word needs 1–3 tokens; the rest is room to fail the check rather than be cut
            definitive=True, explain=lambda text: "not one word of the list",
        ),
        Task(
            "extraction",
            "pull fields out of free text into JSON",
            [{"role": "user", "content": "Extract customer_id, transaction_id, amount (a number) and currency from "
                                         "this message as a JSON object.\n\nMessage: 'Hello, this is customer "
                                         "C042. Payment T1007 for 49.90 EUR was taken twice, please refund one.'"}],
            lambda text: json_fields_match(text, fields),
            {"response_format": {"type": "json_object"}, "max_tokens": 80},
            explain=lambda text: json_misses(text, fields),
        ),
        Task(
            "composition",
            "write a short, polite email that keeps the facts",
            [{"role": "user", "content": f"Write a short email (under 120 words) telling customer C002 that "
                                         f"payment {email_id} of 89.99 EUR is still pending and should clear "
                                         "within one business day. Sign it 'Harbourline Bank'."}],
            lambda text: (email_id in text and "89.99" in text and "Harbourline" in text
                          and 10 <= len(text.split()) <= 120),
            {"max_tokens": 200},
            explain=lambda text: ", ".join([f"no {w}" for w in (email_id, "89.99", "Harbourline") if w not in text]
                                           + [f"{len(text.split())} words, not 10 to 120"] * (not 10 <= len(text.split()) <= 120)),
        ),
        Task(
            "reasoning",
            "find the two closest amounts in a table and the days between them",
            [{"role": "user", "content": "Here are our payments:\n\n" + table +
                                         "\nWhich two payment amounts are closest to each other, and how many "
                                         "days apart were they paid? Give both amounts and the number of days."}],
            lambda text: check_closest_answer(text, truth, payments["payment_amount"].tolist()),
            {"max_tokens": 300},
            explain=lambda text: closest_misses(text, truth, payments["payment_amount"].tolist()),
        ),
    ]


def run_task(client: Any, task: Task, model: str, max_tokens: int | None = None) -> Attempt:
    """Send one task to one model at temperature 0 and check the answer (`max_tokens` lowers the task's own cap)."""
    options = dict(task.options, temperature=0.0)
    if max_tokens is not None:
        options["max_tokens"] = min(options.get("max_tokens", max_tokens), max_tokens)
    reply = complete(client, model, task.messages, **options)
    return Attempt(model, bool(task.check(reply.text)), reply.cost_usd or 0.0, reply.latency_s, reply.text,
                   reply.prompt_tokens, reply.completion_tokens, reply.finish_reason)


def api_message(exc: Any) -> str:
    """The message of an SDK error's JSON body (or the body itself), e.g. for a 403 or a 400."""
    body = getattr(exc, "body", "") or ""
    try:
        return str(json.loads(body).get("message", body))
    except (json.JSONDecodeError, AttributeError):
        return str(body)


def run_grid(client: Any, tasks: Sequence[Task], models: Sequence[str], *, max_tokens: int | None = None,
             same_model: bool = False) -> tuple[dict[tuple[str, str], Attempt], dict[str, str]]:
    """Every model on every task: ({(model, task): Attempt}, {model this key may not call: the API's reason}).

    A 403 (this key's tier does not include the model) skips that model from then on; any other error stops.
    `same_model`: one model serves every alias (the local backend), so each task is asked once, as the first model,
    and that answer is priced at each other alias's dated price — asking again would only repeat it (greedy
    decoding). Those copies were not sent, so their latency_s is NaN (not measured), not the first call's wait.
    """
    from mistralai.client.errors import MistralError

    results: dict[tuple[str, str], Attempt] = {}
    skipped: dict[str, str] = {}
    for task in tasks:
        first = None
        for model in [m for m in models if m not in skipped]:
            if same_model and first is not None:
                results[(model, task.name)] = replace(first.priced_as(model), latency_s=float("nan"))
                continue
            try:
                results[(model, task.name)] = first = run_task(client, task, model, max_tokens)
            except MistralError as exc:
                if exc.status_code != 403:
                    raise
                skipped[model] = api_message(exc)
    if len(skipped) == len(models):
        raise RuntimeError(f"this key may call none of {list(models)}: try ['mistral-small-latest']")
    return results, skipped


def strongest(models: Sequence[str]) -> str:
    """The most capable tier of these (the price table's tier_rank), whatever it costs."""
    return max(models, key=lambda m: tier(m).tier_rank)


def grid_summary(results: dict[tuple[str, str], Attempt], tasks: Sequence[Task], tiers: Sequence[str],
                 same_model: bool, answered_by: str = "") -> str:
    """How many answers were written and how many passed: 12 calls with a key, one per task when one model serves all."""
    if same_model:  # run_grid asked each task once, as the first tier; the other tiers' rows are priced copies
        passed = sum(results[(tiers[0], t.name)].correct for t in tasks)
        return (f"{len(tasks)} answers written, one per task, all by {answered_by.split(' on ')[0] or 'one model'} "
                f"asked as {tiers[0]}: {passed} of {len(tasks)} passed their checker. "
                f"{', '.join(tiers[1:]) or 'No other tier'} {'were' if len(tiers) > 2 else 'was'} not asked: "
                "their rows reuse these answers at their own prices")
    passed = sum(results[(m, t.name)].correct for m in tiers for t in tasks)
    return (f"{passed} of {len(tiers) * len(tasks)} answers passed their checker "
            f"({len(tasks)} tasks × {len(tiers)} tiers, one call each)")


def tier_conclusion(summary: Any, n_tasks: int, same_model: bool) -> str:
    """What to take from the per-tier table (passed, cost_usd per tier): the tier to pick, or why offline none wins."""
    best = int(summary["passed"].max())
    costs = summary["cost_usd"]
    if same_model:  # one local model wrote every answer: only the price differs
        return (f"the same {best} of {n_tasks} answers stand for every tier, so no tier wins; only the price differs: "
                f"at {costs.idxmax()}'s rates they would cost {costs.max() / costs.min():.1f}× what they cost at "
                f"{costs.idxmin()}'s. No wait is measured for a tier that was not asked (NaN)")
    pick = costs[summary["passed"] == best].idxmin()
    return (f"{pick} passed the most tasks ({best} of {n_tasks}) for the least money ({costs[pick]:.6f} USD); "
            "a dearer tier earns its price only on a task it passes and the cheaper one fails")


def effort_conclusion(effort_rows: dict[str, dict[str, Any]], strongest: str, big: Attempt, written_by: str = "") -> str:
    """What the reasoning_effort rows show, beside the strongest tier's answer without thinking (section 4).

    `written_by`: who really wrote `big` when one model served every tier (offline), e.g. "SmolLM2 asked as ...".
    """
    ref = (f"in section 4 {written_by or strongest}, without thinking, wrote {big.completion_tokens} output tokens: "
           f"{'right' if big.correct else 'wrong'}")
    if not effort_rows:
        return (f"nothing thought in this run (the endpoint refused 'high', above), so there is nothing to compare; "
                f"for reference, {ref}. With a key, 'none' and 'high' are measured beside it.")
    said = [f"{label.split(', ')[-1]}: {row['completion_tokens']} output tokens, {'right' if row['correct'] else 'wrong'}"
            for label, row in effort_rows.items()]
    return "; ".join(said) + f"; {ref}. Thinking is worth its output tokens only where it turns wrong into right."


def effort_row(reply: Any, model: str, task: Task) -> dict[str, Any]:
    """One reasoning_effort reply as a row: output tokens, thinking characters, cost at dated prices, checker."""
    from ...catalog import cost_usd
    from ...tools import content_text

    answer = content_text(reply.choices[0].message)  # the text chunks; the thinking chunk is left out
    full = content_text(reply.choices[0].message, thinking=True)  # thinking first, then the answer
    return {"completion_tokens": reply.usage.completion_tokens, "thinking_chars": len(full) - len(answer),
            "cost_usd": round(cost_usd(model, reply.usage), 10), "correct": bool(task.check(answer))}


def measured(cfg: Any, results: dict[tuple[str, str], Attempt], tasks: Sequence[Task],
             tiers: Sequence[str], **extra: Any) -> dict[str, Any]:
    """What notebook 03 records of its grid: passes per tier and the share correct, then `extra` (verdicts, ...), then
    per model and task, correct / latency / cost (last, so the "What we measured" table stays short)."""
    def wait(a: Attempt) -> float | None:  # None: a priced copy, not asked (run_grid with same_model)
        return None if math.isnan(a.latency_s) else round(a.latency_s, 3)

    grid = {m: {t.name: {"correct": results[(m, t.name)].correct, "latency_s": wait(results[(m, t.name)]),
                         "cost_usd": round(results[(m, t.name)].cost_usd, 10)} for t in tasks} for m in tiers}
    cells = [c["correct"] for row in grid.values() for c in row.values()]
    asked = [m for m in tiers if any(c["latency_s"] is not None for c in grid[m].values())]  # not priced copies
    passed = {m: f"{sum(c['correct'] for c in grid[m].values())} of {len(tasks)}" if m in asked else "not asked"
              for m in tiers}  # a tier not asked holds priced copies of the first tier's answers
    return {"backend": cfg.backend, "passed": passed, "share_correct": round(sum(cells) / max(len(cells), 1), 4),
            "strongest_tier": strongest(tiers), **extra, "tiers": list(tiers), "results": grid}
