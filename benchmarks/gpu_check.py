"""`make gpu-check`: on a lent CUDA GPU, measure what the GPU ledger predicts (not in CI: CI has no GPU).

For Mistral-7B-Instruct-v0.3 in its real shape with random weights (`config:mistral-7b-instruct-v0.3`: no hub, no
token), at fp16, int8 and nf4 one at a time, through the course's own loader (`selfhost.load_model`, which plans the
load with the ledger): the peak CUDA memory of the load and a decode (torch's allocator peak plus the CUDA context,
read from `cudaMemGetInfo`) next to the ledger's prediction, decode tokens/s at batch 1, and whether the logits of a
forward pass are all finite (fp16 overflows to inf/nan where bf16 would not: a model trained in bf16 can meet that on a
T4, which has no bf16). Then Ministral 3 3B Instruct 2512 in its real shape (random weights, built with the class
transformers uses for it, `Mistral3ForConditionalGeneration`) at fp16: peak memory against the config's prediction,
and the same finite-logits check. Random weights prove shapes, memory and speed, not that trained activations stay in
fp16's range: `--real HUB_ID` (network and HF_TOKEN needed) repeats the logits check on real weights. Then the same
notebooks CI runs on the twin (06–08) on the real card, if time is left. Writes runs/gpu/summary.json.

    python benchmarks/gpu_check.py [--budget-s 480] [--new-tokens 64] [--skip-notebooks]
    python benchmarks/gpu_check.py --plan-only   # no GPU needed: print what would be loaded and predicted
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from helpers import selfhost  # noqa: E402
from helpers.course import gpu  # noqa: E402

MODEL = "config:mistral-7b-instruct-v0.3"
MINISTRAL = "ministral-3-3b-instruct-2512"  # data/configs: the model 10's vLLM recipe serves on a T4
PRECISIONS = ("fp16", "int8", "nf4")
KV_TOKENS = 1024


def measure(precision: str, new_tokens: int) -> dict:
    """Load at one precision, decode, and return measured peak vs the ledger's prediction (then free it)."""
    import torch

    from helpers import inference

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    free0, total = torch.cuda.mem_get_info()
    started = time.perf_counter()
    lm = selfhost.load_model(MODEL, precision, "cuda", kv_tokens=KV_TOKENS)
    load_s = time.perf_counter() - started
    tps = inference.tokens_per_second(lm, new_tokens=new_tokens, repeats=3)
    torch.cuda.synchronize()
    free1, _ = torch.cuda.mem_get_info()
    spec = lm.spec
    row = {
        "precision": precision,
        "gpu": torch.cuda.get_device_name(),
        "load_s": round(load_s, 1),
        "decode_tokens_per_s": round(tps, 2),
        "footprint_bytes": lm.footprint_bytes,
        "predicted_weights_bytes": spec.gpu_weights_bytes,
        "predicted_kv_bytes": spec.gpu_kv_bytes,
        "torch_peak_allocated_bytes": int(torch.cuda.max_memory_allocated()),
        "torch_peak_reserved_bytes": int(torch.cuda.max_memory_reserved()),
        "device_used_after_decode_bytes": int(total - free1),
        "device_used_before_load_bytes": int(total - free0),
        "ledger_predicted_total_bytes": gpu.current_ledger().used_bytes(),
        "placement_warning": selfhost.placement_warning(lm.model),
    }
    row["peak_vs_prediction"] = round(row["torch_peak_reserved_bytes"] /
                                      (spec.gpu_weights_bytes + spec.gpu_kv_bytes), 3)
    row["finite_logits"] = finite_logits(lm.model)
    selfhost.unload(lm)
    del lm
    return row


def finite_logits(model, tokens: int = 256) -> dict:
    """One forward pass over `tokens` token ids: are all logits finite? (fp16 overflow shows as inf or nan.)"""
    import torch

    vocab = int(getattr(model.config, "vocab_size", None) or model.config.get_text_config().vocab_size)
    ids = torch.randint(3, vocab, (1, tokens), generator=torch.Generator().manual_seed(0)).to(model.device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    bad = int((~torch.isfinite(logits)).sum())
    return {"ok": bad == 0, "non_finite": bad, "max_abs": float(logits.float().abs().max()), "dtype": str(logits.dtype)}


def ministral(new_tokens: int) -> dict:
    """Ministral 3 3B in its real shape, random weights, fp16 on the GPU: peak memory vs prediction, logits finite."""
    import torch
    from transformers import Mistral3ForConditionalGeneration

    from helpers import memory, vllm

    config = memory.load_config(MINISTRAL)
    predicted = vllm.weights_bytes(config)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    started = time.perf_counter()
    with torch.device("cuda"):
        model = Mistral3ForConditionalGeneration._from_config(config, dtype=torch.float16)
    model.eval()
    build_s = time.perf_counter() - started
    row = {"model": f"{MINISTRAL} (real shape, random weights)", "precision": "fp16", "gpu": torch.cuda.get_device_name(),
           "build_s": round(build_s, 1), "footprint_bytes": int(model.get_memory_footprint()),
           "predicted_weights_bytes": predicted, "finite_logits": finite_logits(model),
           "torch_peak_allocated_bytes": int(torch.cuda.max_memory_allocated())}
    row["footprint_vs_prediction"] = round(row["footprint_bytes"] / predicted, 4)
    del model
    torch.cuda.empty_cache()
    return row


def real_weights(hub_id: str) -> dict:
    """`--real HUB_ID`: the finite-logits check on a model's real weights at fp16 (needs the hub and HF_TOKEN)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hub_id, dtype=torch.float16, device_map={"": 0})
    try:
        return {"model": hub_id, "precision": "fp16", "finite_logits": finite_logits(model)}
    finally:
        del model
        torch.cuda.empty_cache()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-s", type=float, default=480.0, help="stop starting new measurements after this")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--skip-notebooks", action="store_true")
    ap.add_argument("--real", default="", help="also check fp16 logits on this hub model's real weights")
    ap.add_argument("--plan-only", action="store_true", help="print the plans for a T4 twin, load nothing")
    ap.add_argument("--out", default=str(ROOT / "runs" / "gpu" / "summary.json"))
    args = ap.parse_args()
    started = time.perf_counter()
    out = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "model": MODEL, "rows": [],
           "notebooks": {}, "notes": []}
    if args.plan_only:
        for p in PRECISIONS:
            gpu.reset_ledger()
            spec = selfhost.plan_load(MODEL, p, "twin:t4", kv_tokens=KV_TOKENS)
            out["rows"].append({"precision": p, "plan": spec.summary(), "predicted_weights_bytes": spec.gpu_weights_bytes})
            print(spec.summary())
        from helpers import memory, vllm

        predicted = vllm.weights_bytes(memory.load_config(MINISTRAL))
        out["rows"].append({"model": MINISTRAL, "precision": "fp16", "predicted_weights_bytes": predicted})
        print(f"{MINISTRAL} at fp16: {predicted / 2**30:.2f} GiB of weights predicted (real shape, random weights)")
    else:
        import torch

        if not torch.cuda.is_available():
            print("gpu-check needs a CUDA GPU (this machine has none): run it where one is lent, "
                  "or use --plan-only to see the predictions.")
            return 2
        out["gpu"] = torch.cuda.get_device_name()
        for p in PRECISIONS:
            if time.perf_counter() - started > args.budget_s:
                out["notes"].append(f"{p}: skipped, time budget spent")
                continue
            try:
                row = measure(p, args.new_tokens)
            except Exception as exc:  # record and go on: one precision failing must not hide the others
                row = {"precision": p, "error": f"{type(exc).__name__}: {exc}"[:2000]}
            out["rows"].append(row)
            print(json.dumps(row))
        for name, job in (("ministral", lambda: ministral(args.new_tokens)),
                          *((("real", lambda: real_weights(args.real)),) if args.real else ())):
            if time.perf_counter() - started > args.budget_s:
                out["notes"].append(f"{name}: skipped, time budget spent")
                continue
            try:
                row = job()
            except Exception as exc:
                row = {"model": name, "error": f"{type(exc).__name__}: {exc}"[:2000]}
            out["rows"].append(row)
            print(json.dumps(row))
        if not args.skip_notebooks:
            env = {**os.environ, "COURSE_LOCAL_MODEL": MODEL, "COURSE_DEVICE": "cuda", "HF_HUB_OFFLINE": "1"}
            for nb in ("06", "07", "08"):
                left = args.budget_s - (time.perf_counter() - started)
                if left < 60:
                    out["notebooks"][nb] = "skipped: time budget spent"
                    continue
                run = subprocess.run([sys.executable, "-m", "helpers.course", "run", "--only", nb], env=env,
                                     cwd=ROOT, capture_output=True, text=True, timeout=max(60, left))
                out["notebooks"][nb] = run.stdout.strip().splitlines()[-3:] if run.stdout else run.stderr[-500:]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
