"""Write what the course claims runs unchanged against vLLM, for `make vllm-check` to hand to vLLM's own code.

Run with the course's venv (it imports helpers): `.venv/bin/python scripts/vllm_requests.py [OUT_DIR]` writes
OUT_DIR/commands.json (the `vllm serve` commands notebook 10 prints) and OUT_DIR/requests.json (the chat requests of
04, 09 and the conformance suite as vLLM's OpenAI server would receive them: the Mistral SDK's JSON body after
`helpers.vllm.to_vllm_request`). scripts/vllm_check.py, in vLLM's own venv, checks both.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from transformers import AutoConfig

from helpers import vllm
from helpers.device import PROFILES
from helpers.memory import configs_dir
from helpers.tools import tool_spec

# vLLM's Mistral tokenizer accepts only Mistral-style tool-call ids: 9 characters, letters and digits.
CALL_ID = "T1001call"


def retrieve_payment_status(transaction_id: str) -> str:
    """Get the payment status of a transaction.

    Args:
        transaction_id: The transaction id, e.g. T1001.
    """
    return json.dumps({"transaction_id": transaction_id, "status": "Paid"})


def retrieve_payment_date(transaction_id: str) -> str:
    """Get the payment date of a transaction.

    Args:
        transaction_id: The transaction id, e.g. T1001.
    """
    return json.dumps({"transaction_id": transaction_id, "date": "2021-10-05"})


TOOLS = [tool_spec(retrieve_payment_status), tool_spec(retrieve_payment_date)]
ASK = [{"role": "user", "content": "What's the status of my transaction T1001?"}]
PAYMENT_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["transaction_id", "status"],
                  "properties": {"transaction_id": {"type": "string"},
                                 "status": {"type": "string", "enum": ["Paid", "Pending", "Failed"]}}}


def mistral_requests(model: str) -> dict[str, dict]:
    """The chat requests the course's conformance suite sends (10 runs it; it says they run unchanged against vLLM),
    recorded as the unmodified Mistral SDK puts them on the wire: every check but those that send a request to be
    refused (`4xx: …`) or probe a La Plateforme-only feature (`API: …`), against a transport that records the body
    and answers 503 (raw-HTTP checks reach no server: recorder.invalid does not resolve)."""
    import httpx2
    from mistralai.client import Mistral

    from helpers.endpoint import conformance

    seen: dict[str, list[dict]] = {}
    current = {"check": ""}

    def record(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/chat/completions"):
            seen.setdefault(current["check"], []).append(json.loads(request.content or b"{}"))
        return httpx2.Response(503, json={"message": "recorded, not answered"})

    client = Mistral(api_key="recording", server_url="http://recorder.invalid",
                     client=httpx2.Client(transport=httpx2.MockTransport(record)))
    target = conformance.Target(client=client, model=model, embed_model="mistral-embed")
    for name, check in conformance.CHECKS.items():
        if name.startswith(("4xx", "API")):  # refused by La Plateforme, or La Plateforme-only
            continue
        current["check"] = name
        try:
            check(target)
        except Exception:  # every answer is a 503: only the request matters here
            pass
    return {f"{name} #{i + 1}" if len(bodies) > 1 else name: body
            for name, bodies in seen.items() for i, body in enumerate(bodies)}


def main(out_dir: str = "runs/vllm") -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ministral = AutoConfig.from_pretrained(configs_dir() / "ministral-3-3b-instruct-2512")
    mistral7b = AutoConfig.from_pretrained(configs_dir() / "mistral-7b-instruct-v0.3")
    plans = {"t4_ministral_3_3b": vllm.vllm_recipe(ministral, PROFILES["t4"]),
             "t4_mistral_7b_awq": vllm.vllm_recipe(mistral7b, PROFILES["t4"], "mistral-7b-awq"),
             "a100_ministral_3_3b": vllm.vllm_recipe(ministral, PROFILES["a100-40gb"])}
    commands = {name: {"argv": plan.argv(), "fits": plan.fits, "problems": plan.problems(),
                       "compute_capability": list(plan.gpu.compute_capability)} for name, plan in plans.items()}
    requests, notes = {}, {}
    for name, request in mistral_requests(plans["t4_ministral_3_3b"].checkpoint.hub_id).items():
        requests[name] = request  # as the course sends it: no translation
        notes[name] = vllm.to_vllm_request(request)[1]  # what vLLM would need changed (random_seed → seed)
    (out / "commands.json").write_text(json.dumps({"vllm_version": vllm.VLLM_VERSION, "commands": commands}, indent=1))
    (out / "requests.json").write_text(json.dumps({"requests": requests, "changed_for_vllm": notes}, indent=1))
    print(f"wrote {out / 'commands.json'} ({len(commands)} commands), {out / 'requests.json'} ({len(requests)} requests)")


if __name__ == "__main__":
    main(*sys.argv[1:])
