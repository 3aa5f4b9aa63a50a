"""scripts/vllm_check.py fails on what vLLM refuses (runs only where `make vllm-check` has built .venv-vllm)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
pytestmark = pytest.mark.skipif(not VLLM_PYTHON.exists(), reason="no .venv-vllm: `make vllm-check` builds it")

GOOD = ["vllm", "serve", "mistralai/Ministral-3-3B-Instruct-2512-BF16", "--tokenizer-mode", "mistral",
        "--config-format", "mistral", "--load-format", "mistral", "--dtype", "half", "--max-model-len", "8192",
        "--gpu-memory-utilization", "0.9", "--enable-auto-tool-choice", "--tool-call-parser", "mistral"]
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
ASK = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": TOOLS}


def _check(tmp_path: Path, commands: dict, requests: dict) -> tuple[int, str, dict]:
    t4 = [7, 5]
    (tmp_path / "commands.json").write_text(json.dumps(
        {"commands": {k: {"argv": v, "compute_capability": t4} for k, v in commands.items()}}))
    (tmp_path / "requests.json").write_text(json.dumps({"requests": requests}))
    env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu", "VLLM_NO_USAGE_STATS": "1"}
    run = subprocess.run([str(VLLM_PYTHON), str(ROOT / "scripts" / "vllm_check.py"), str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=300)
    return run.returncode, run.stdout, json.loads((tmp_path / "check.json").read_text())


def test_the_check_fails_on_bitsandbytes_any_random_seed_and_a_bad_parser(tmp_path):
    rc, out, report = _check(tmp_path, {
        "good": GOOD,
        "bitsandbytes": [*GOOD, "--quantization", "bitsandbytes"],
        "misspelt_parser": [*GOOD[:-1], "mistrall"],
        "unknown_flag": [*GOOD, "--no-such-flag", "1"],
    }, {
        "required": {**ASK, "tool_choice": "required", "seed": 0},
        "any": {**ASK, "tool_choice": "any"},
        "random_seed": {**ASK, "tool_choice": "auto", "random_seed": 0},
    })
    assert rc == 1, out
    assert report["commands"]["good"]["ok"] and report["requests"]["required"]["ok"]
    assert "Unknown quantization method: bitsandbytes" in report["commands"]["bitsandbytes"]["error"]
    assert "mistrall" in report["commands"]["misspelt_parser"]["error"]
    assert "unrecognized arguments" in report["commands"]["unknown_flag"]["error"]
    assert "tool_choice" in report["requests"]["any"]["error"]
    # accepted but not honoured: vLLM drops fields it does not know, and the report says which
    assert report["requests"]["random_seed"]["ok"] and report["requests"]["random_seed"]["ignored"] == ["random_seed"]
    assert all(t["ok"] for t in report["self_tests"].values()), report["self_tests"]


def test_the_check_passes_on_a_good_command_and_request(tmp_path):
    rc, out, report = _check(tmp_path, {"good": GOOD}, {"required": {**ASK, "tool_choice": "required"}})
    assert rc == 0, out
    assert report["vllm"] == "0.34.0"
    assert "tool_call_parser=mistral" in report["commands"]["good"]["checked"]
