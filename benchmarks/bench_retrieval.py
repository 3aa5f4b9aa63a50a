"""How long does one hybrid search take at 1,000 chunks? Prints a markdown table for docs/benchmarks.md.

The corpus: the course handbook cut into sentence-aware chunks of at most 160 characters (inside each section), then
repeated with a numbered prefix ("[copy 3] ...") until there are 1,000 distinct chunks. Each query is one of the 32
eval questions, searched with `helpers.hybrid.HybridIndex` as notebooks 05 and 08 use it (all-MiniLM-L6-v2 on the CPU;
FAISS flat cosine over the chunks and over their sentences, a chunk's dense score counting its best sentence; bm25s;
the convex fusion α × dense + (1 − α) × BM25 of min-max scaled scores over each side's top 100; k=3). Timed per query, **embedding the question included**: the dense part alone, BM25
alone, and the full hybrid search; medians (p50) and p95 after a warm-up.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_retrieval.py [--chunks 1000] [--queries 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.simplefilter("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def corpus(n: int) -> list:
    from helpers import rag

    base = rag.chunk_sections(rag.load_document(), max_chars=160, overlap=0)
    chunks, copy = [], 0
    while len(chunks) < n:
        for c in base:
            if len(chunks) == n:
                break
            text = c.text if copy == 0 else f"[copy {copy}] {c.text}"
            chunks.append(rag.Chunk(f"c{len(chunks):04d}", text, c.start, c.end, c.title))
        copy += 1
    return chunks


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the query embedding")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from helpers import hybrid, rag

    chunks = corpus(args.chunks)
    embedder = rag.LocalEmbedder(device="cpu")
    started = time.perf_counter()
    index = hybrid.HybridIndex.build(chunks, embedder, metric="cosine")
    build_s = time.perf_counter() - started
    from helpers.course.evals import retrieval

    questions = [q.question for q in retrieval.load_eval_set()]
    queries = [questions[i % len(questions)] for i in range(args.queries)]
    for q in questions:  # warm-up: every question once, each way
        for mode in hybrid.MODES:
            index.using(mode).search(q, 3)

    timings: dict[str, list[float]] = {mode: [] for mode in hybrid.MODES}
    for q in queries:  # the three ways alternate, so background load hits them alike
        for mode in ("dense", "bm25", "hybrid"):
            view = index.using(mode)
            t0 = time.perf_counter()
            view.search(q, 3)
            timings[mode].append((time.perf_counter() - t0) * 1000)

    load = os.getloadavg()
    print(f"hybrid search at {len(index):,} chunks — {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} ({args.threads} threads), "
          f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min); "
          f"{len(queries)} queries, k=3; index built in {build_s:.1f} s")
    print()
    print("| search, per query | p50 | p95 |")
    print("|---|---|---|")
    names = {"dense": "dense: embed the question + FAISS flat (cosine), chunks and their sentences",
             "bm25": "BM25 (bm25s): tokenize + score",
             "hybrid": f"**hybrid**: both + convex fusion (α = {index.alpha}, top {hybrid.CANDIDATES} each)"}
    for mode in ("dense", "bm25", "hybrid"):
        print(f"| {names[mode]} | {percentile(timings[mode], 50):.2f} ms | {percentile(timings[mode], 95):.2f} ms |")


if __name__ == "__main__":
    main()
