"""`make gpu-check`: on a lent CUDA GPU, measure what the GPU ledger predicts (not in CI: CI has no GPU).

For Mistral-7B-Instruct-v0.3 in its real shape with random weights (`config:mistral-7b-instruct-v0.3`: no hub, no
token), at fp16, int8 and nf4 one at a time, through the course's own loader (`selfhost.load_model`, which plans the
load with the ledger): the peak CUDA memory of the load and a decode (torch's allocator peak plus the CUDA context,
read from `cudaMemGetInfo`) next to the ledger's prediction, and decode tokens/s at batch 1. Then the same notebooks
CI runs on the twin (06–08) on the real card, if time is left. Writes runs/gpu/summary.json.

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
    selfhost.unload(lm)
    del lm
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-s", type=float, default=480.0, help="stop starting new measurements after this")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--skip-notebooks", action="store_true")
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
