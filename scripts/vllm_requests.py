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
    """The course's chat requests as the Mistral SDK sends them (SDK field names: `random_seed`, `tool_choice="any"`)."""
    base = {"model": model, "temperature": 0, "max_tokens": 64, "random_seed": 0}
    call = {"id": CALL_ID, "type": "function",
            "function": {"name": "retrieve_payment_status", "arguments": json.dumps({"transaction_id": "T1001"})}}
    return {
        "forced_tool_call": {**base, "messages": ASK, "tools": TOOLS, "tool_choice": "any"},
        "auto_tool_call": {**base, "messages": ASK, "tools": TOOLS, "tool_choice": "auto"},
        "named_tool_call": {**base, "messages": ASK, "tools": TOOLS,
                            "tool_choice": {"type": "function", "function": {"name": "retrieve_payment_date"}}},
        "no_tool_call": {**base, "messages": ASK, "tools": TOOLS, "tool_choice": "none"},
        "tool_round_trip": {**base, "tools": TOOLS, "messages": [
            *ASK, {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": CALL_ID, "name": "retrieve_payment_status",
             "content": retrieve_payment_status("T1001")}]},
        "json_mode": {**base, "response_format": {"type": "json_object"}, "messages": [
            {"role": "user", "content": "Answer in JSON with keys transaction_id and status: T1001 is paid."}]},
        "json_schema": {**base, "messages": ASK, "response_format": {
            "type": "json_schema", "json_schema": {"name": "payment", "schema": PAYMENT_SCHEMA, "strict": True}}},
        "streaming": {**base, "messages": ASK, "stream": True},
    }


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
        requests[name], notes[name] = vllm.to_vllm_request(request)
    (out / "commands.json").write_text(json.dumps({"vllm_version": vllm.VLLM_VERSION, "commands": commands}, indent=1))
    (out / "requests.json").write_text(json.dumps({"requests": requests, "changed_for_vllm": notes}, indent=1))
    print(f"wrote {out / 'commands.json'} ({len(commands)} commands), {out / 'requests.json'} ({len(requests)} requests)")


if __name__ == "__main__":
    main(*sys.argv[1:])
