"""What does batching buy the offline model? Endpoint tokens/s at 1, 4 and 16 concurrent requests against bare
`generate`, and one decoding step against the time to stream the weights from memory. Prints a markdown table for
docs/benchmarks.md and writes JSON.

SmolLM2-135M-Instruct on the CPU, fp32 as the course endpoint serves it (`--precision bf16`: what bf16 would buy on a
CPU that computes it in hardware; the endpoint stays fp32, whose batched greedy answers equal unbatched ones).
Every request is the same greedy chat completion, `max_tokens = min_tokens = N`
(so each produces exactly N tokens, same prompt length). At concurrency c, c client threads send requests through
the unmodified `mistralai` SDK, one request each; tokens/s = all completion tokens / wall time. The endpoint runs
with batching on (max_batch 16); `--off` adds it with batching off (max_batch 1, one request at a time: slow).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_decode.py [--threads 2] [--tokens 64] [--repeats 3] [--off] [--omp]

OpenMP's busy-waiting: on a CPU shared with other processes, a thread that spins while its partner is descheduled
stalls every parallel op: `--omp` times a decoding step with the default policy and with `OMP_WAIT_POLICY=PASSIVE`
(set below unless you set it, and by the Makefile); the output says which policy ran.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its OpenMP threads
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.simplefilter("ignore")

from bench_server import cpu_model  # noqa: E402

MESSAGES = [{"role": "user", "content": "Count from one to fifty in words, separated by commas."}]

# one SmolLM2 decoding step (80 cached tokens) at batch 1 and 16, timed in a fresh process: the wait policy is read
# when OpenMP starts
_PROBE = """
import time, torch
from transformers import DynamicCache
from helpers import selfhost
from helpers.settings import SMOLLM
torch.set_num_threads({threads})
model = selfhost.load_model(SMOLLM, "fp32", "cpu").model
with torch.inference_mode():
    for b in (1, 16):
        cache = DynamicCache()
        model(input_ids=torch.randint(0, 1000, (b, 80)), past_key_values=cache, use_cache=True)
        x, ts = torch.randint(0, 1000, (b, 1)), []
        for _ in range(7):
            t0 = time.perf_counter(); model(input_ids=x, past_key_values=cache, use_cache=True)
            ts.append(time.perf_counter() - t0)
        print(b, sorted(ts)[3] * 1000)
"""


def omp_probe(threads: int) -> dict[str, dict[str, float]]:
    """Median ms of one SmolLM2 decoding step at batch 1 and 16, with OpenMP's default wait policy and PASSIVE."""
    import subprocess

    out = {}
    for policy in ("default", "PASSIVE"):
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        if policy != "default":
            env["OMP_WAIT_POLICY"] = policy
        text = subprocess.run([sys.executable, "-c", _PROBE.format(threads=threads)], env=env, check=True,
                              capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent).stdout
        out[policy] = {f"batch {b}": round(float(ms), 1) for b, ms in (line.split() for line in text.splitlines())}
    return out


def median_of(fn, repeats: int) -> float:
    return statistics.median(fn() for _ in range(repeats))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per request (default 64)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement; medians (default 3)")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--off", action="store_true", help="also measure the endpoint with batching off")
    parser.add_argument("--omp", action="store_true", help="also time a decoding step per OpenMP wait policy")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                        help="weights precision (default fp32, what the course endpoint serves on a CPU)")
    parser.add_argument("--out", default="runs/bench_decode.json")
    args = parser.parse_args(argv)

    import torch
    import torch.nn.functional as F
    from mistralai.client import Mistral

    from helpers import selfhost
    from helpers.endpoint import ChatEngine, LocalServer
    from helpers.settings import SMOLLM

    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.tokens
    lm = selfhost.load_model(SMOLLM, args.precision, "cpu")
    model, tok = lm.model, lm.tokenizer

    # bare generate: the same prompt, batch 1, greedy, exactly n tokens
    text = tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    inputs = tok(text, return_tensors="pt", add_special_tokens=False)

    def bare() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                 pad_token_id=tok.eos_token_id)
        assert out.shape[1] - inputs["input_ids"].shape[1] == n
        return n / (time.perf_counter() - t0)

    bare()  # warm-up
    bare_tps = median_of(bare, args.repeats)

    # the memory-streaming estimate: weight bytes / the bandwidth one 576x1536 matrix-vector product reaches
    hidden, inter = model.config.hidden_size, model.config.intermediate_size
    w, x = torch.randn(inter, hidden), torch.randn(1, hidden)

    def matvec() -> float:
        t0 = time.perf_counter()
        for _ in range(200):
            F.linear(x, w)
        return (time.perf_counter() - t0) / 200

    matvec()
    gbps = w.numel() * 4 / median_of(matvec, 5) / 1e9
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    stream_ms = weight_bytes / (gbps * 1e9) * 1000

    def endpoint(client: Mistral, c: int) -> float:
        def one(_: int) -> int:
            r = client.chat.complete(model="mistral-small-latest", messages=MESSAGES, max_tokens=n, min_tokens=n,
                                     temperature=0)
            return r.usage.completion_tokens

        t0 = time.perf_counter()
        with ThreadPoolExecutor(c) as pool:
            tokens = sum(pool.map(one, range(c)))  # c requests in flight at once, each one request
        assert tokens == c * n
        return tokens / (time.perf_counter() - t0)

    rows: dict[str, dict[int, float]] = {}
    engine = ChatEngine(lm)
    for label, max_batch in (("batching on", 16), ("batching off", 1))[: 2 if args.off else 1]:
        with LocalServer(engine=engine, max_batch=max_batch) as url:
            client = Mistral(api_key="bench", server_url=url)
            endpoint(client, 2)  # warm-up: HTTP connections, grammar-free path, allocator
            samples: dict[int, list[float]] = {c: [] for c in args.levels}
            for _ in range(args.repeats):  # levels interleaved, so a change in background load hits each alike
                for c in args.levels:
                    samples[c].append(endpoint(client, c))
            rows[label] = {c: statistics.median(v) for c, v in samples.items()}
    step_ms = {c: 1000 * c / rows["batching on"][c] for c in args.levels}  # wall ms per step at concurrency c

    load = os.getloadavg()[0]
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    where = (f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads, "
             f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}), load average {load:.2f}, {when}")
    print(f"SmolLM2-135M-Instruct {lm.precision}, greedy, {n} tokens per request, medians of {args.repeats}. {where}.\n")
    print("| | " + " | ".join(f"{c} concurrent" for c in args.levels) + " |")
    print("|---|" + "---|" * len(args.levels))
    for label, r in rows.items():
        one = r[args.levels[0]]
        print(f"| endpoint, {label} (tokens/s) | " + " | ".join(
            f"{r[c]:.1f} ({r[c] / one:.1f}x)" for c in args.levels) + " |")
    print(f"| bare `generate`, batch 1 (tokens/s) | {bare_tps:.1f} | | |")
    print(f"\nOne step: {1000 / bare_tps:.1f} ms with `generate` at batch 1; "
          + ", ".join(f"{step_ms[c]:.1f} ms per step of {c} sequences (endpoint)" for c in args.levels)
          + f". Streaming the {weight_bytes / 1e6:.0f} MB of weights at the {gbps:.0f} GB/s one {inter}x{hidden} "
          f"matrix-vector product reached: {stream_ms:.1f} ms per step.")
    top, base = rows["batching on"][args.levels[-1]], rows["batching on"][args.levels[0]]
    verdict = "meets" if top >= 4 * base else "MISSES"
    print(f"{args.levels[-1]} concurrent / {args.levels[0]}: {top / base:.1f}x ({verdict} the 4x target).")
    probe = omp_probe(torch.get_num_threads()) if args.omp else None
    if probe:
        print("One decoding step (median ms of 7), by OpenMP wait policy: " + "; ".join(
            f"{policy}: " + ", ".join(f"{k} {v:.0f}" for k, v in r.items()) for policy, r in probe.items())
            + f" (load average {os.getloadavg()[0]:.2f}).")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"where": where, "precision": lm.precision, "tokens": n, "repeats": args.repeats, "bare_generate": bare_tps,
                               "endpoint": {k: {str(c): v for c, v in r.items()} for k, r in rows.items()},
                               "step_ms": step_ms, "stream_estimate_ms": stream_ms, "gbps": gbps, "omp_probe": probe},
                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
