"""Self-hosting benchmark: load a model at each precision, one at a time; footprint vs estimate, CUDA peak, tokens/s.

Meant for a lent GPU with the real Mistral-7B shape and random weights (memory and speed don't depend on values):

    python benchmarks/bench_selfhost.py --model config:mistral-7b-instruct-v0.3 --precisions fp16 int8 nf4

The offline model's decode speed on a CPU (docs/benchmarks.md's figure; `make bench` runs it):

    python benchmarks/bench_selfhost.py --model smollm2-135m --device cpu --precisions fp32 bf16 --threads 2 --repeats 5

Prints a markdown table and writes JSON (default runs/bench_selfhost.json), each row labelled with the device and date.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers import inference, memory, selfhost  # noqa: E402
from helpers.course import today  # noqa: E402
from helpers.course.doctor import gpu  # noqa: E402
from helpers.course.evals import quality


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="standin")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precisions", nargs="+", default=["fp16", "int8", "nf4"])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", default="runs/bench_selfhost.json")
    args = parser.parse_args(argv)
    import platform

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    hw = gpu()
    text = (Path(__file__).resolve().parent.parent / "data" / "perplexity_text.txt").read_text()
    rows, base = [], None
    for precision in args.precisions:
        started = time.perf_counter()
        try:
            lm = selfhost.load_model(args.model, precision, args.device)
        except selfhost.ModelLoadError as exc:
            print(f"skip {precision}: {exc}")
            continue
        load_s = time.perf_counter() - started
        report = selfhost.memory_report(lm)
        score = quality.score_text(lm, text)
        base = base or score
        rows.append({
            "precision": precision,
            "device": hw["name"] if hw.get("device") == "cuda" else f"CPU ({platform.processor() or platform.machine()}, "
                                                                     f"{torch.get_num_threads()} threads)",
            "date": today(),
            "model": lm.label,
            "load_s": round(load_s, 1),
            "footprint_gb": round(report["footprint_bytes"] / memory.GB, 3),
            "estimated_gb": round(report["estimated_bytes"] / memory.GB, 3),
            "cuda_peak_gb": round(report["cuda_peak_bytes"] / memory.GB, 3) if "cuda_peak_bytes" in report else None,
            "tokens_per_s": round(inference.tokens_per_second(lm, new_tokens=args.new_tokens, repeats=args.repeats), 2),
            "new_tokens": args.new_tokens,
            "repeats (median)": args.repeats,
            "top1_agreement": round(quality.top1_agreement(base, score), 4),
        })
        print(json.dumps(rows[-1]), flush=True)
        selfhost.unload(lm)
        del lm
    if not rows:
        return 1
    cols = list(rows[0])
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
