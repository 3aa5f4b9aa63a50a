"""How much does the local endpoint cost on top of the model? Prints a markdown table for docs/benchmarks.md.

On the offline stand-in: 64-token chat completions (min_tokens = max_tokens = 64, so every run produces
exactly 64 tokens), timed (a) by calling the same generation directly in Python (render with mistral-common
+ decode loop) and (b) through the unmodified `mistralai` SDK over loopback HTTP. Runs alternate so
background load hits both alike; we report medians. Then embeddings throughput for one 512-input batch,
through the server and directly with sentence-transformers.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_server.py [--runs 30]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.simplefilter("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TOKENS = 64
MESSAGES = [{"role": "user", "content": "Which transaction in the payments table has the two closest amounts?"}]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs per path (default 30)")
    args = parser.parse_args()

    import httpx
    import torch
    from mistralai.client import Mistral

    from helpers.embeddings import load_embedder
    from helpers.endpoint import LocalServer, SamplingParams, load_engine
    from helpers.settings import DEFAULT_LOCAL_EMBED_MODEL

    engine = load_engine("standin", "auto", "cpu")
    server = LocalServer(engine=engine, embed_model=DEFAULT_LOCAL_EMBED_MODEL, device="cpu")
    url = server.start()
    client = Mistral(api_key="bench", server_url=url)

    def direct(seed: int) -> float:
        t0 = time.perf_counter()
        prompt = engine.render(MESSAGES)
        gen = engine.generate(prompt, SamplingParams(max_tokens=TOKENS, min_tokens=TOKENS, seed=seed, temperature=0.7))
        assert len(gen.ids) == TOKENS
        return time.perf_counter() - t0

    def via_server(seed: int) -> float:
        t0 = time.perf_counter()
        r = client.chat.complete(model="mistral-small-latest", messages=MESSAGES, max_tokens=TOKENS,
                                 min_tokens=TOKENS, random_seed=seed, temperature=0.7)
        assert r.usage.completion_tokens == TOKENS
        return time.perf_counter() - t0

    def via_stream(seed: int) -> float:
        t0 = time.perf_counter()
        for _ in client.chat.stream(model="mistral-small-latest", messages=MESSAGES, max_tokens=TOKENS,
                                    min_tokens=TOKENS, random_seed=seed, temperature=0.7):
            pass
        return time.perf_counter() - t0

    http = httpx.Client(base_url=url, timeout=60)

    def via_raw_stream(seed: int) -> float:  # the same SSE stream, read without the SDK's per-event parsing
        t0 = time.perf_counter()
        body = {"model": "mistral-small-latest", "messages": MESSAGES, "max_tokens": TOKENS, "min_tokens": TOKENS,
                "random_seed": seed, "temperature": 0.7, "stream": True}
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            lines = [line for line in response.iter_lines() if line.startswith("data:")]
        assert lines[-1] == "data: [DONE]"
        return time.perf_counter() - t0

    paths = {"direct": direct, "server": via_server, "stream": via_stream, "raw": via_raw_stream}
    for seed in range(3):  # warm-up: allocator, caches, first HTTP connection
        for run in paths.values():
            run(seed)
    times: dict[str, list[float]] = {k: [] for k in paths}
    for seed in range(args.runs):  # interleaved, so background load hits every path alike
        for name, run in paths.items():
            times[name].append(run(seed))
    med = {k: statistics.median(v) for k, v in times.items()}

    texts = [f"Payment T{1000 + i} of {i * 7 % 500 + 10}.{i % 100:02d} EUR was settled on day {i % 28 + 1} "
             f"of the month by customer C{i % 37} through the card network." for i in range(512)]
    embedder = load_embedder(DEFAULT_LOCAL_EMBED_MODEL, "cpu")
    client.embeddings.create(model="mistral-embed", inputs=texts[:8])  # loads the server's copy
    emb: dict[str, list[float]] = {"direct": [], "server": []}
    for _ in range(3):
        t0 = time.perf_counter()
        embedder.encode(texts, batch_size=64, convert_to_numpy=True, show_progress_bar=False)
        emb["direct"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        r = client.embeddings.create(model="mistral-embed", inputs=texts)
        emb["server"].append(time.perf_counter() - t0)
        assert len(r.data) == 512 and len(r.data[0].embedding) == 384
    server.stop()
    emed = {k: statistics.median(v) for k, v in emb.items()}

    overhead = med["server"] / med["direct"] - 1
    stream_overhead = med["stream"] / med["direct"] - 1
    print(f"Machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), load average {os.getloadavg()[0]:.2f}; "
          f"{dt.datetime.now().strftime('%Y-%m-%d %H:%M')}. Stand-in model, {args.runs} runs each, medians.\n")
    print("| path | median | per token | overhead vs direct |")
    print("|---|---|---|---|")
    print(f"| direct: render + generate ({TOKENS} tokens) | {med['direct'] * 1000:.1f} ms | "
          f"{med['direct'] * 1000 / TOKENS:.2f} ms | — |")
    print(f"| server: `chat.complete` over HTTP | {med['server'] * 1000:.1f} ms | "
          f"{med['server'] * 1000 / TOKENS:.2f} ms | {overhead:+.1%} |")
    print(f"| server: `chat.stream` (SSE) | {med['stream'] * 1000:.1f} ms | "
          f"{med['stream'] * 1000 / TOKENS:.2f} ms | {stream_overhead:+.1%} |")
    print(f"| server: same stream read with httpx, no SDK | {med['raw'] * 1000:.1f} ms | "
          f"{med['raw'] * 1000 / TOKENS:.2f} ms | {med['raw'] / med['direct'] - 1:+.1%} |")
    print(f"| embeddings, 512 inputs, direct | {emed['direct'] * 1000:.0f} ms | "
          f"{512 / emed['direct']:.0f} inputs/s | — |")
    print(f"| embeddings, 512 inputs, `embeddings.create` | {emed['server'] * 1000:.0f} ms | "
          f"{512 / emed['server']:.0f} inputs/s | {emed['server'] / emed['direct'] - 1:+.1%} |")
    target = "within" if overhead <= 0.15 else "ABOVE"
    print(f"\nServer overhead {overhead:+.1%}: {target} the 15% target.")


if __name__ == "__main__":
    main()
