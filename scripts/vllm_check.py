"""Check the course's `vllm serve` commands and vLLM-bound chat requests with vLLM's own code, without a GPU.

Runs in vLLM's own venv (`make vllm-check` builds .venv-vllm: vLLM installed --no-deps plus what its CLI and OpenAI
protocol modules import), on the JSON that scripts/vllm_requests.py wrote from helpers code:

    VLLM_TARGET_DEVICE=cpu .venv-vllm/bin/python scripts/vllm_check.py runs/vllm

Commands: vLLM's `vllm serve` parser (`make_arg_parser` on a `FlexibleArgumentParser`, `validate_parsed_serve_args`,
`AsyncEngineArgs.from_cli_args`), then the checks vLLM makes only once it has the model, called on the parsed values:
`ModelConfig._verify_quantization` and the method's minimum compute capability, the model-loader, config-parser,
tokenizer and tool-parser registries, `CacheConfig` for `--gpu-memory-utilization`.
Requests: `ChatCompletionRequest.model_validate` (vLLM's OpenAI chat request model), and no field vLLM would drop.
Self-tests, every run: `--quantization bitsandbytes` and `tool_choice="any"` must be rejected by vLLM's code with its
own message, and `random_seed` must not be a field vLLM reads, or the check fails.
Writes OUT_DIR/check.json; exits 1 if anything failed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace


def serve_args(argv: list[str]):
    """Parse a `vllm serve ...` argv exactly as `vllm serve` does, then build the engine arguments from it."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.common.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    if argv[:2] != ["vllm", "serve"]:
        raise ValueError(f"not a `vllm serve` command: {' '.join(argv[:2])}")
    parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parser.parse_args(argv[2:])
    except SystemExit:  # argparse reports to stderr and exits: keep its words
        raise ValueError(err.getvalue().strip().splitlines()[-1]) from None
    args.subparser = "serve"
    validate_parsed_serve_args(args)
    if args.model_tag is not None:  # what `vllm serve` does with the positional model
        args.model = args.model_tag
    return args, AsyncEngineArgs.from_cli_args(args)


def engine_checks(args, engine, capability: int) -> list[str]:
    """vLLM's own checks that normally run once the model is known, called on the parsed values; returns what passed."""
    from vllm.config import CacheConfig, ModelConfig
    from vllm.model_executor.layers.quantization import get_quantization_config
    from vllm.model_executor.model_loader import _LOAD_FORMAT_TO_MODEL_LOADER
    from vllm.tokenizers.registry import TokenizerRegistry
    from vllm.tool_parsers import ToolParserManager
    from vllm.transformers_utils.config import get_config_parser

    done = []
    CacheConfig(gpu_memory_utilization=engine.gpu_memory_utilization)
    done.append(f"gpu_memory_utilization={engine.gpu_memory_utilization}")
    if engine.quantization is not None:
        # the check ModelConfig runs after reading the checkpoint's config (here: a checkpoint that states none)
        stand_in = SimpleNamespace(quantization=engine.quantization, hf_config=None,
                                   model_arch_config=SimpleNamespace(quantization_config=None),
                                   allow_deprecated_quantization=False)
        ModelConfig._verify_quantization(stand_in)
        needs = get_quantization_config(engine.quantization).get_min_capability()
        if needs > capability:
            raise ValueError(f"quantization {engine.quantization!r} needs compute capability {needs}, "
                             f"the GPU has {capability}")
        done.append(f"quantization={engine.quantization} (capability >= {needs})")
    if str(engine.load_format) not in _LOAD_FORMAT_TO_MODEL_LOADER:
        raise ValueError(f"Load format `{engine.load_format}` is not supported")
    done.append(f"load_format={engine.load_format}")
    if engine.config_format != "auto":
        get_config_parser(str(engine.config_format))
    done.append(f"config_format={engine.config_format}")
    if engine.tokenizer_mode != "auto":
        TokenizerRegistry.load_tokenizer_cls(engine.tokenizer_mode)
    done.append(f"tokenizer_mode={engine.tokenizer_mode}")
    if args.tool_call_parser:
        ToolParserManager.get_tool_parser(args.tool_call_parser)
        done.append(f"tool_call_parser={args.tool_call_parser}")
    return done


def check_command(argv: list[str], capability: int) -> dict:
    try:
        args, engine = serve_args(argv)
        done = engine_checks(args, engine, capability)
        return {"ok": True, "model": engine.model, "dtype": engine.dtype, "max_model_len": engine.max_model_len,
                "checked": done}
    except Exception as e:  # vLLM's own exception, reported in its own words
        return {"ok": False, "error": f"{type(e).__name__}: {e}".splitlines()[0][:400]}


def check_request(body: dict) -> dict:
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

    try:
        request = ChatCompletionRequest.model_validate(body)
    except Exception as e:
        return {"ok": False, "error": f"{type(e).__name__}: {e}".splitlines()[0][:400]}
    known = set(ChatCompletionRequest.model_fields) | {f.alias for f in ChatCompletionRequest.model_fields.values()
                                                        if f.alias}
    dropped = sorted(set(body) - known)  # vLLM accepts unknown fields and ignores them: accepted, not honoured
    return {"ok": True, "tool_choice": request.tool_choice if isinstance(request.tool_choice, str) else "named",
            "seed": request.seed, "ignored": dropped, **({"note": f"vLLM ignores {dropped}"} if dropped else {})}


def main(out_dir: str = "runs/vllm") -> int:
    # With the hub "offline", vLLM's engine arguments replace the model id by a local snapshot path and fail without
    # one; the check never needs the model (it runs with no network at all: `unshare -n` passes), so leave both unset.
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.pop(var, None)
    import vllm

    start = time.perf_counter()
    out = Path(out_dir)
    commands = json.loads((out / "commands.json").read_text())["commands"]
    requests = json.loads((out / "requests.json").read_text())["requests"]
    report = {"vllm": vllm.__version__, "commands": {}, "requests": {}, "self_tests": {}}
    for name, spec in commands.items():
        capability = spec["compute_capability"][0] * 10 + spec["compute_capability"][1]
        report["commands"][name] = {"command": " ".join(spec["argv"]), **check_command(spec["argv"], capability)}
    for name, body in requests.items():
        report["requests"][name] = check_request(body)

    # Self-tests: the two things the course once got wrong must still be refused by vLLM's code.
    first = next(iter(commands.values()))
    bnb = check_command([*first["argv"], "--quantization", "bitsandbytes"], 75)
    any_body = {**next(b for b in requests.values() if b.get("tool_choice") == "required"), "tool_choice": "any"}
    any_result = check_request(any_body)
    seed_result = check_request({**any_body, "tool_choice": "required", "random_seed": 0})
    # each must fail for the right reason (a missing module would "reject" everything)
    report["self_tests"]["quantization_bitsandbytes_rejected"] = {
        "ok": "Unknown quantization method: bitsandbytes" in (bnb.get("error") or ""), "vllm_said": bnb.get("error")}
    report["self_tests"]["tool_choice_any_rejected"] = {
        "ok": "Invalid value for `tool_choice`: any" in (any_result.get("error") or ""),
        "vllm_said": any_result.get("error")}
    report["self_tests"]["random_seed_not_a_vllm_field"] = {
        "ok": seed_result.get("ignored") == ["random_seed"], "vllm_said": seed_result.get("note")}
    report["seconds"] = round(time.perf_counter() - start, 2)
    (out / "check.json").write_text(json.dumps(report, indent=1))

    failed = 0
    for section in ("commands", "requests", "self_tests"):
        for name, result in report[section].items():
            failed += not result["ok"]
            why = result.get("error") or result.get("vllm_said") or result.get("note") or ""
            print(f"{'ok  ' if result['ok'] else 'FAIL'} {section[:-1]:>9} {name}{': ' + why if why else ''}")
    print(f"vLLM {report['vllm']}: {failed} failed, {report['seconds']} s → {out / 'check.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", default="runs/vllm")
    sys.exit(main(parser.parse_args().out_dir))
