"""Regenerate notebooks 05–07 (self-hosting) with scripts/nbbuild.py: `.venv/bin/python scripts/build_selfhost_notebooks.py [05 06 07]`."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nbbuild import code, md, write_notebook  # noqa: E402

NB = Path(__file__).resolve().parent.parent / "notebooks"

COMMON_SETUP = '''import pandas as pd

from helpers import memory, selfhost, settings, standin
from helpers.course import record, today
from helpers.doctor import gpu

cfg = settings.resolve(LOCAL_MODEL=LOCAL_MODEL, DEVICE=DEVICE)
hw = gpu()
print(f"device: {cfg.device} ({hw['name']}) · model: {cfg.local_model} (LOCAL_MODEL from {cfg.sources['LOCAL_MODEL']})")'''


# ============================================================================ 05
def nb05() -> None:
    params = '''LOCAL_MODEL = None     # "auto" | "standin" | hub id | local path | "config:mistral-7b-instruct-v0.3" (real size, random weights)
DEVICE = None          # "auto" | "cpu" | "cuda"; None → $COURSE_DEVICE, else auto
PRECISION = None       # None → "fp16" on CUDA, "fp32" on CPU; or "fp32" | "fp16" | "bf16"
MAX_NEW_TOKENS = None  # tokens per generation and for the speed test; None → 32
TEMPERATURE = None     # sampling temperature for the sampled example; None → 0.7
TOP_P = None           # nucleus sampling cut-off for the sampled example; None → 0.95
CONFIG = None          # config for the T4 budget; None → "mistral-7b-instruct-v0.3" (shipped in data/configs)'''
    cells = [
        md("""## 1 · Which model, which device

`settings.resolve` picks the model: on a CUDA GPU `LOCAL_MODEL='auto'` means Mistral-7B-Instruct-v0.3 from the hub
(gated: accept the licence and set `HF_TOKEN`); without one it means the offline **stand-in**, a two-layer random
Mistral that shares the real tokenizer and code path. Every number below is measured on the device printed here."""),
        code(COMMON_SETUP + '''
PRECISION = PRECISION or "auto"
MAX_NEW_TOKENS = int(MAX_NEW_TOKENS or 32)
TEMPERATURE = float(TEMPERATURE if TEMPERATURE is not None else 0.7)
TOP_P = float(TOP_P if TOP_P is not None else 0.95)
CONFIG = CONFIG or "mistral-7b-instruct-v0.3"'''),
        md("""## 2 · Load tokenizer and model

One call does what the usual `AutoTokenizer` / `AutoModelForCausalLM.from_pretrained(..., dtype=..., device_map="auto")`
pair does, plus the things learners trip over: a clear message for gated or unreachable models, a check that the
weights fit *before* loading, and a pad token.

**Why these precisions?** On a GPU the course loads **fp16**: half the bytes of fp32 and full-speed tensor cores;
a T4 has no bf16. On a CPU it defaults to **fp32**: most CPUs have no fast fp16 matrix multiply, so fp16 there saves
memory but usually costs speed (pass `PRECISION="fp16"` to see it on yours)."""),
        code('''lm = selfhost.load_model(cfg.local_model, PRECISION, cfg.device)
selfhost.banner(lm)
print(f"loaded {lm.name} at {lm.precision} on {lm.device} in {lm.load_seconds:.1f} s")
for note in lm.notes:
    print("note:", note)
assert lm.precision in {"fp32", "fp16", "bf16"}'''),
        md("""## 3 · Memory: measured next to estimated

`model.get_memory_footprint()` adds up the bytes of every parameter and buffer. `helpers.memory` predicts the same
number from the config alone, building the model on PyTorch's `meta` device (shapes, no data). If the two agree here,
you can trust the estimator for models you have not downloaded. On CUDA, torch's allocator numbers are shown too:
they include everything torch holds, not just weights."""),
        code('''report = selfhost.memory_report(lm)
assert abs(report["estimate error %"]) < 1, report  # the estimator counts exactly what get_memory_footprint counts
pd.Series({k: (f"{v:,} B = {memory.human(v)}" if k.endswith("bytes") else v) for k, v in report.items()}, name=hw["name"])'''),
        md(f"""## 4 · Mistral-7B on a T4: the budget

The seed post says FP16 Mistral-7B "occupies ~14.3 GB" on a T4. From the shipped config (`data/configs`): weights
alone are params × 2 bytes. Then each token of context adds to the **KV cache**: layers × KV heads × head dim × 2
(K and V) × 2 bytes = **128 KiB per token** for v0.3. A T4 reports **14.56 GiB** usable; the course allows
{0.5} GiB for the CUDA context and activations (a stated allowance — measure yours with `torch.cuda.max_memory_allocated`)."""),
        code('''budget = [memory.fits(CONFIG, "fp16", tokens, gpu="T4") for tokens in (4096, 8192, 32768)]
print(f"{CONFIG}: {memory.count_parameters(CONFIG).total:,} parameters; "
      f"KV cache {memory.kv_bytes_per_token(CONFIG) / memory.KiB:.0f} KiB/token at fp16")
memory.plot_budget(budget, title=f"{CONFIG} at fp16 on a T4 (estimated from the config)")
pd.DataFrame([r.as_row() for r in budget])'''),
        md("""FP16 weights take about 13.5 GiB, so the 7B model fits a T4 only with a short context; at 8k tokens it no
longer does, and the full 32k window needs 4 GiB of KV cache on its own. Notebook 06 shows what quantization buys."""),
        md("""## 5 · The chat template

Instruct models were trained on one exact prompt format. `apply_chat_template` renders it from a list of messages;
never build `[INST]` strings by hand. v0.3's template folds a system message into the last user turn:"""),
        code('''messages = [{"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": "What is the mistral?"}]
rendered = lm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
print(rendered)
assert rendered.startswith("<s>[INST]") and rendered.endswith("[/INST]") and "Answer in one sentence." in rendered'''),
        md("""**The v0.1/v0.2 trap.** The seed post loads `Mistral-7B-Instruct-v0.1`. Its template has *no system role*
and demands strict user/assistant alternation, so the very same messages fail with
"Conversation roles must alternate". The course ships that template, so you can see the error without the hub:"""),
        code('''v1_template = standin.chat_template("mistral_v1")
try:
    lm.tokenizer.apply_chat_template(messages, chat_template=v1_template, tokenize=False)
    raise AssertionError("expected the v0.1 template to refuse a system message")
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}")
    assert "alternate" in str(exc)

# The fix for v0.1/v0.2: put the instructions into the first user message.
folded = [{"role": "user", "content": messages[0]["content"] + "\\n\\n" + messages[1]["content"]}]
print(lm.tokenizer.apply_chat_template(folded, chat_template=v1_template, tokenize=False))'''),
        md("""## 6 · Generation knobs

- `max_new_tokens` caps the reply length (and the time it takes).
- `do_sample=False` is **greedy** decoding: always the most likely next token, so the same prompt gives the same
  reply every time. `temperature` and `top_p` only matter when `do_sample=True`.
- `temperature` rescales the probabilities (below 1 sharper, above 1 flatter); `top_p` keeps the smallest set of
  tokens whose probabilities add up to `top_p`.

Greedy is deterministic — checked, not claimed:"""),
        code('''prompt = "Give three tips for writing clear documentation."
greedy_1 = selfhost.generate(lm, prompt, max_new_tokens=MAX_NEW_TOKENS)
greedy_2 = selfhost.generate(lm, prompt, max_new_tokens=MAX_NEW_TOKENS)
assert greedy_1.token_ids == greedy_2.token_ids, "two greedy runs must produce identical tokens"
sampled = selfhost.generate(lm, prompt, max_new_tokens=MAX_NEW_TOKENS, do_sample=True,
                            temperature=TEMPERATURE, top_p=TOP_P, seed=0)
pd.DataFrame([
    {"mode": "greedy (run 1)", "tokens": greedy_1.new_tokens, "reply": greedy_1.text},
    {"mode": "greedy (run 2)", "tokens": greedy_2.new_tokens, "reply": greedy_2.text},
    {"mode": f"sampled T={TEMPERATURE}, top_p={TOP_P}, seed 0", "tokens": sampled.new_tokens, "reply": sampled.text},
])'''),
        md("""### Why `pad_token_id` and `attention_mask`

Mistral's tokenizer defines **no pad token**. `generate` needs one to fill finished sequences in a batch, and
without it warns on every call; the loader sets it to EOS. Once pad and EOS are the same token, the model can no
longer tell padding from a real end of text by looking at token ids — the **attention mask** says which positions
are real. In a batch of prompts of different lengths, the shorter one is padded (on the left, for generation):"""),
        code('''tok = lm.tokenizer
tok.padding_side = "left"
batch = tok(["Hi", "Tell me about the mistral wind in Provence"], padding=True, return_tensors="pt")
print("pad token:", repr(tok.pad_token), "id", tok.pad_token_id, "(= eos id", tok.eos_token_id, ")")
print("attention_mask:\\n", batch["attention_mask"])
assert batch["attention_mask"][0].sum() < batch["attention_mask"][1].sum()  # the short prompt has padding masked out
print("generate() gets:", {k: v for k, v in selfhost.generation_kwargs(lm, MAX_NEW_TOKENS).items() if v is not None})'''),
        md("""## 7 · Streaming and speed

A chat UI shows tokens as they come. `TextIteratorStreamer` receives tokens from `generate` (running in a
background thread) and yields text pieces to your loop. Then speed: **tokens per second at batch 1**, the median
of three greedy runs forced to produce exactly `MAX_NEW_TOKENS` tokens, after a warm-up."""),
        code('''pieces = []
for piece in selfhost.stream(lm, "Write a haiku about wind.", max_new_tokens=MAX_NEW_TOKENS):
    pieces.append(piece)
    print(piece, end="", flush=True)
print(f"\\n[{len(pieces)} pieces streamed]")
assert pieces'''),
        code('''tps = selfhost.tokens_per_second(lm, new_tokens=MAX_NEW_TOKENS, repeats=3)
print(f"{tps:.1f} tokens/s — {lm.name} at {lm.precision} on {hw['name']}")
if lm.is_standin:
    print("The stand-in's speed says nothing about Mistral-7B: it has 2 tiny layers.")
print("Reference, not this run: Mistral-7B-Instruct FP16 on a T4 ≈16 tokens/s at batch 1 (a public benchmark).")
assert tps > 0'''),
        md("""## 8 · Playground

Move the sliders and press **Generate**. With *sample* off, temperature and top_p are greyed out: greedy ignores
them. (In papermill/CI the cell below drives it once, programmatically.)"""),
        code('''from helpers.playground_local import generation_playground

pg = generation_playground(lm, prompt="Explain quantization in one sentence.")
pg.set(max_new_tokens=min(MAX_NEW_TOKENS, 16), do_sample=False)
pg.button.click()  # the same thing a mouse click does
assert pg.last is not None and pg.output.value == pg.last.text
pg.widget'''),
        md("## What we measured\n\nRecorded for the course summary; every value comes from this run on the device named in `measured_on`."),
        code('''cuda_peak = report.get("cuda_peak_bytes")
record(
    source=f"{hw['name']}, {lm.label}, {today()}",
    device=lm.device,
    dtype=lm.precision,
    footprint_bytes=report["footprint_bytes"],
    estimated_bytes=report["estimated_bytes"],
    tokens_per_s=round(tps, 2),
    cuda_peak_bytes=cuda_peak,
    mistral7b_fp16_estimated_gb=round(memory.weight_bytes(CONFIG, "fp16") / memory.GB, 2),
)'''),
        code('''selfhost.unload(lm)  # free the memory before the next notebook'''),
        md("""## Takeaways

- Load with an explicit precision: fp16 on a GPU (a T4 has no bf16), fp32 on a CPU.
- Memory is predictable from the config: FP16 Mistral-7B is ≈14.5 GB = 13.5 GiB of weights, plus 128 KiB of KV
  cache per token — on a T4 that leaves room for only a short context.
- Always go through the chat template; v0.1/v0.2 templates refuse system messages.
- Set `pad_token_id`, pass the `attention_mask`; greedy is deterministic, sampling is not (unless seeded).

Next: [06 · Quantization: INT8 and NF4](06_quantization_int8.ipynb)."""),
    ]
    write_notebook(
        NB / "05_selfhost_fp16.ipynb",
        title="05 · Self-hosting Mistral-7B in FP16",
        learn="Load an open-weight Mistral with `transformers`, see how much memory it really takes (measured, and "
              "estimated from its config), whether Mistral-7B fits a T4, and generate: chat template, greedy vs "
              "sampling, pad token and attention mask, streaming, tokens per second — plus a playground to try the knobs.",
        runs_on="CPU ✓ (offline stand-in: plumbing real, text meaningless) · no API key · GPU for real Mistral-7B "
                "(T4 or better)",
        params=params,
        cells=cells,
    )


# ============================================================================ 06
def nb06() -> None:
    params = '''LOCAL_MODEL = None   # "auto" | "standin" | hub id | local path | "config:mistral-7b-instruct-v0.3" (real size, random weights)
DEVICE = None        # "auto" | "cpu" | "cuda"; None → $COURSE_DEVICE, else auto
PRECISIONS = None    # what to compare with the baseline, e.g. ["int8", "nf4"]; None → ["int8", "nf4"]
BASELINE = None      # the full-precision reference (always measured); None → "fp16" on CUDA, "fp32" on CPU
NEW_TOKENS = None    # tokens per speed run; None → 32
CONFIG = None        # config for the Mistral-7B estimate table; None → "mistral-7b-instruct-v0.3"'''
    cells = [
        md("""## 1 · Setup

Each precision is loaded **one at a time** and freed before the next, as you would on a T4 where two copies of
the model never fit."""),
        code(COMMON_SETUP + '''
BASELINE = BASELINE or selfhost.default_precision(cfg.device)
PRECISIONS = [p for p in (PRECISIONS or ["int8", "nf4"]) if p != BASELINE]
NEW_TOKENS = int(NEW_TOKENS or 32)
CONFIG = CONFIG or "mistral-7b-instruct-v0.3"
TEXT = settings.data_path("perplexity_text.txt").read_text()
ok, why = selfhost.bnb_support(cfg.device)
print(f"baseline: {BASELINE} · compared: {PRECISIONS} · bitsandbytes: {why}")
if cfg.device == "cpu":
    print("Baseline is fp32 on CPU: fp16 matmuls are slow or unsupported on most CPUs.")
label = None  # set from the first model loaded'''),
        md("""## 2 · How the two quantizations work

- **INT8 (LLM.int8, bitsandbytes)**: each `nn.Linear` weight is stored as 8-bit integers with one scale per row.
  At run time, activation columns with outliers above `llm_int8_threshold=6.0` are multiplied in fp16, the rest in
  int8 — that split keeps quality (no perplexity loss at 6.7B–13B in the LLM.int8 paper) but costs time.
- **NF4 (QLoRA's 4-bit NormalFloat)**: weights in 16 levels spaced for normally distributed values, two per byte,
  one scale per block of 64 (quantized again with *double quantization*); computed in fp16 on a GPU.
- Both leave embeddings, norms and `lm_head` in the compute dtype.

For each precision we measure: `get_memory_footprint()` next to the estimate, tokens/s at batch 1, perplexity on
a short text shipped with the course (`data/perplexity_text.txt`), and **top-1 agreement**: the share of positions
where the quantized model's most likely next token equals the baseline's."""),
        code('''rows, base_score = [], None
for precision in [BASELINE, *PRECISIONS]:
    if precision in memory.QUANTIZED and not ok:
        print(f"skip {precision}: {why}")
        continue
    lm = selfhost.load_model(cfg.local_model, precision, cfg.device)
    if label is None:
        label = lm.label
        selfhost.banner(lm)
    score = selfhost.score_text(lm, TEXT)
    base_score = base_score or score
    rows.append({
        "precision": precision,
        "footprint_bytes": lm.footprint_bytes,
        "estimated_bytes": lm.estimated_bytes(),
        "tokens_per_s": round(selfhost.tokens_per_second(lm, new_tokens=NEW_TOKENS, repeats=3), 2),
        "perplexity": round(score.perplexity, 2),
        "top1_agreement": round(selfhost.top1_agreement(base_score, score), 4),
        "cuda_peak_bytes": selfhost.memory_report(lm).get("cuda_peak_bytes"),
    })
    selfhost.unload(lm)  # free it before loading the next precision
    del lm

results = pd.DataFrame(rows).set_index("precision")
for p, r in results.iterrows():
    assert abs(r.estimated_bytes - r.footprint_bytes) / r.footprint_bytes < 0.01, p  # estimator within 1%
assert results.loc[BASELINE, "top1_agreement"] == 1.0
results.assign(**{"footprint MB": results.footprint_bytes / 1e6, "estimate MB": results.estimated_bytes / 1e6})'''),
        code('''import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
x = range(len(results))
axes[0].bar([i - 0.2 for i in x], results.footprint_bytes / 1e6, 0.4, label="measured")
axes[0].bar([i + 0.2 for i in x], results.estimated_bytes / 1e6, 0.4, label="estimated")
axes[0].set_title("weights (MB)")
axes[0].legend(fontsize=8)
axes[1].bar(x, results.tokens_per_s, color="#f59e0b")
axes[1].set_title("tokens/s, batch 1")
axes[2].bar(x, results.top1_agreement, color="#16a34a")
axes[2].set_title(f"top-1 agreement with {BASELINE}")
axes[2].set_ylim(0, 1.05)
for ax in axes:
    ax.set_xticks(list(x), results.index)
fig.suptitle(f"{cfg.local_model} on {hw['name']} ({today()})")
fig.tight_layout()'''),
        md("""**Reading this on the CPU stand-in.** The stand-in is a two-layer toy whose parameters sit almost all in the
embeddings and `lm_head`, which bitsandbytes does not quantize — so its footprint barely moves, while in Mistral-7B
the quantized Linear layers are 96% of the weights (computed below). Its speed is CPU speed of a toy: **it says
nothing about a GPU**, and random weights make its perplexity meaningless in absolute terms. What the offline run
does prove: the int8/nf4 loading path works, the estimator predicts each footprint, and quantization changes the
model's predictions only a little (agreement)."""),
        code('''share = {}
for name in dict.fromkeys([cfg.local_model, CONFIG]):
    src = name if name.startswith("config:") or name == CONFIG else selfhost.model_path(name)
    c = memory.count_parameters(src)
    share[name] = {"parameters": f"{c.total:,}", "in Linear layers int8/nf4 quantize": f"{c.quantizable / c.total:.1%}"}
pd.DataFrame(share).T'''),
        md("""## 3 · Mistral-7B: the estimate, beside the seed post's claims

The same estimator on the shipped Mistral-7B config (real shapes, no download). The seed post's "VRAM used" figures
are its own claims from a T4, quoted as published; it has no NF4 row. The estimate counts weights the way
`get_memory_footprint` does; bitsandbytes' quantization constants (scales, absmax) come on top."""),
        code('''seed_claims = {"fp16": "14.3 GB", "int8": "7.5 GB", "nf4": "—"}
est = pd.DataFrame(memory.estimate_table(CONFIG)).set_index("precision")
est["seed post's T4 claim"] = [seed_claims[p] for p in est.index]
est["fits a T4 with 4k context"] = [memory.fits(CONFIG, p, 4096, "T4").fits for p in est.index]
assert 14.4 <= est.loc["fp16", "weights GB (get_memory_footprint)"] <= 14.6
est'''),
        md("""FP16 is ≈14.5 GB (13.5 GiB) — neither the seed's 14.3 GB nor the 16 GB on the box. INT8 halves it (≈7.5 GB,
matching the seed), NF4 quarters it (≈4.0 GB, ≈4.1 GB with constants).

**Speed is the catch.** On a GPU at batch 1, bitsandbytes LLM.int8 is typically **2–5× slower** than FP16 (HF's
int8 blog: 3.7× on a T4 for T5-11B; the LLM.int8 paper and bnb's maintainer say the same), and NF4 is somewhat
slower too (a public T4 benchmark: FP16 ≈16.0 tok/s, NF4 ≈11.6 tok/s for Mistral-7B). INT8 buys memory, not speed:
the seed's "free performance" is about memory only. Measure on your own GPU with
`LOCAL_MODEL="config:mistral-7b-instruct-v0.3"` (real shapes, random weights)."""),
        md("## What we measured\n\nEvery number from this run, on the device named in `measured_on`; the 7B numbers are estimates from the config."),
        code('''record(
    source=f"{hw['name']}, {label}, {today()}",
    device=cfg.device,
    baseline=BASELINE,
    precisions={p: {k: r[k] for k in ("footprint_bytes", "estimated_bytes", "tokens_per_s", "perplexity", "top1_agreement")}
                for p, r in results.iterrows()},
    mistral7b_estimated_gb={p: est.loc[p, "weights GB (get_memory_footprint)"] for p in est.index},
)'''),
        md("""## Takeaways

- INT8 halves the weights, NF4 quarters them; the estimator predicts both before you download anything.
- Quantization is not a speed-up at batch 1: LLM.int8 is typically slower than FP16 on a GPU; NF4 is in between.
- Quality loss is small in the literature (LLM.int8: none at 6.7B; NF4 matches BF16 on MMLU in QLoRA) — check
  yours with perplexity and top-1 agreement on your own text.
- Pick by constraint: FP16 when it fits with the context you need, INT8/NF4 when it does not.

Next: [07 · Local RAG](07_local_rag.ipynb)."""),
    ]
    write_notebook(
        NB / "06_quantization_int8.ipynb",
        title="06 · Quantization: INT8 and NF4 with bitsandbytes",
        learn="Load the same model at full precision, INT8 and 4-bit NF4, one at a time, and compare what each costs "
              "and gives: memory (measured and estimated), tokens per second, perplexity and top-1 agreement with the "
              "full-precision model. Then the same memory table for Mistral-7B from its config, beside the seed post's "
              "T4 figures — and why INT8 saves memory but not time.",
        runs_on="CPU ✓ (bitsandbytes ≥ 0.46 quantizes on CPU; stand-in numbers) · no API key · GPU for real Mistral-7B",
        params=params,
        cells=cells,
    )


# ============================================================================ 07
def nb07() -> None:
    params = """LOCAL_MODEL = None        # "auto" | "standin" | hub id | local path | "config:mistral-7b-instruct-v0.3"
DEVICE = None             # "auto" | "cpu" | "cuda"; None → $COURSE_DEVICE, else auto
LOCAL_EMBED_MODEL = None  # sentence-transformers model; None → all-MiniLM-L6-v2 (offline copy, 384 dims)
PRECISION = None          # the LLM's precision; None → "fp16" on CUDA, "fp32" on CPU; or "int8" | "nf4"
K = None                  # chunks retrieved and put in the prompt; None → 3
CHUNK_CHARS = None        # chunk size in characters (sentence-aligned); None → 512, as in the seed post
N_QUERIES = None          # questions answered end to end for the latency percentiles (≥ 20); None → 20
MAX_NEW_TOKENS = None     # answer length; None → 64 on CUDA, 16 on CPU
CHAT_MODEL = None         # API model for the side-by-side run (only with a key); None → mistral-small-latest"""
    cells = [
        md("""## 1 · Setup

Same document, same eval questions and same `helpers.rag` code as notebook 04 — only the embedder and the
generator change: a sentence-transformers model and the locally loaded Mistral instead of `mistral-embed` and
`chat.complete`. Nothing leaves this machine."""),
        code(COMMON_SETUP.replace("settings.resolve(LOCAL_MODEL=LOCAL_MODEL, DEVICE=DEVICE)",
                                  "settings.resolve(LOCAL_MODEL=LOCAL_MODEL, DEVICE=DEVICE, LOCAL_EMBED_MODEL=LOCAL_EMBED_MODEL,\n                       CHAT_MODEL=CHAT_MODEL)")
             .replace("import pandas as pd\n", "import pandas as pd\n\nfrom helpers import local_rag, rag\n") + """
K = int(K or 3)
CHUNK_CHARS = int(CHUNK_CHARS or 512)
N_QUERIES = max(int(N_QUERIES or 20), 1)
MAX_NEW_TOKENS = int(MAX_NEW_TOKENS or (64 if cfg.device == "cuda" else 16))
PRECISION = PRECISION or "auto\""""),
        md("""## 2 · Index the document with a local embedder

all-MiniLM-L6-v2 is small (≈80 MB, 384 dimensions) and runs on a CPU. It was trained for **cosine similarity**,
so the index uses cosine (inner product on unit-length vectors) rather than the seed's raw L2. The index is saved
with the embedder's model id and dimension, and loading it back with another embedder fails loudly instead of
returning nonsense neighbours. `TimedEmbedder` only adds a stopwatch, so question-embedding time can be reported
apart from search time."""),
        code("""document = rag.load_document()
eval_set = rag.load_eval_set(document=document)
chunks = rag.chunk_sentences(document, max_chars=CHUNK_CHARS)
embedder = local_rag.TimedEmbedder(rag.LocalEmbedder(cfg.local_embed_model, device=cfg.device))
index = rag.build_index(chunks, embedder, metric="cosine")
path = index.save(settings.cache_dir() / "indexes" / f"07_{CHUNK_CHARS}.npz")
index = rag.VectorIndex.load(path, embedder)
print(f"{len(chunks)} chunks · {index.dim}-dim vectors from {index.model_id} · saved to {path.name}")
assert len(index) == len(chunks) and (index.dim == 384 or cfg.local_embed_model != settings.DEFAULT_LOCAL_EMBED_MODEL)"""),
        md("""## 3 · Retrieval quality

For each of the eval questions, where does the first chunk containing the answer passage rank?
**hit rate @k** = share of questions answered within the top k; **MRR** = mean of 1/rank. These are real numbers
even offline: the embedder is the real model."""),
        code("""quality = rag.evaluate(index, eval_set, ks=(1, 3, 5))
assert all(0 <= quality[m] <= 1 for m in ("hit_rate_at_1", "hit_rate_at_3", "hit_rate_at_5", "mrr"))
assert quality["hit_rate_at_1"] <= quality["hit_rate_at_3"] <= quality["hit_rate_at_5"]
pd.Series({m: round(quality[m], 3) for m in ("hit_rate_at_1", "hit_rate_at_3", "hit_rate_at_5", "mrr")},
          name=f"{index.model_id}, {quality['n_questions']} questions")"""),
        md("""## 4 · Generate with the local model

The grounded prompt (`rag.grounded_prompt`) asks the model to answer only from the retrieved chunks and cite their
ids. The LLM is loaded by the same `helpers.selfhost.load_model` as in notebooks 05–06."""),
        code("""lm = selfhost.load_model(cfg.local_model, PRECISION, cfg.device)
selfhost.banner(lm)


def local_generate(prompt: str) -> str:
    return selfhost.generate(lm, prompt, max_new_tokens=MAX_NEW_TOKENS).text


questions = [eval_set[i % len(eval_set)].question for i in range(N_QUERIES)]
local_rag.answer(index, questions[0], K, local_generate)  # warm-up, not timed
answers = [local_rag.answer(index, q, K, local_generate) for q in questions]
first = answers[0]
print("Q:", first.question)
print("retrieved:", [h.chunk.id for h in first.hits])
print("A:", first.answer)
assert len(answers) == N_QUERIES and all(len(a.hits) == K for a in answers)"""),
        md("""## 5 · Where the time goes

Each question passes through three stages. p50 is the typical question, p95 the slow tail."""),
        code("""local_latency = local_rag.latency_summary(answers)
latency = {f"local ({lm.device})": local_latency}
local_rag.plot_latency(latency, title=f"{N_QUERIES} questions, k={K} — {hw['name']}, {today()}")
pd.DataFrame(latency).T.round(2)"""),
        md("""## 6 · Side by side with the API pipeline (notebook 04)

With a `MISTRAL_API_KEY`, the same questions go through `mistral-embed` + `chat.complete`, with the same chunks,
index code and prompt. Without a key this step is skipped."""),
        code("""api_quality = api_latency = None
if cfg.api_key is None:
    print("Skipped: no MISTRAL_API_KEY found (set it, or add it to Colab secrets, to compare with La Plateforme).")
else:
    from helpers.client import get_client

    api_cfg = settings.resolve(BACKEND="mistral", CHAT_MODEL=CHAT_MODEL)
    client = get_client(api_cfg)
    api_index = rag.build_index(chunks, local_rag.TimedEmbedder(rag.ApiEmbedder(client, api_cfg.embed_model)),
                                metric="cosine")
    api_quality = rag.evaluate(api_index, eval_set, ks=(1, 3, 5))
    api_gen = local_rag.api_generate(client, api_cfg.chat_model, MAX_NEW_TOKENS)
    api_answers = [local_rag.answer(api_index, q, K, api_gen) for q in questions]
    api_latency = local_rag.latency_summary(api_answers)
    latency[f"API ({api_cfg.chat_model})"] = api_latency
    local_rag.plot_latency(latency, title=f"local vs API, {N_QUERIES} questions, k={K}, {today()}")
    display(pd.DataFrame({
        "local": {m: quality[m] for m in ("hit_rate_at_1", "hit_rate_at_3", "hit_rate_at_5", "mrr")},
        "API": {m: api_quality[m] for m in ("hit_rate_at_1", "hit_rate_at_3", "hit_rate_at_5", "mrr")},
    }).round(3))
    display(pd.DataFrame(latency).T.round(1))"""),
        md("## What we measured\n\nRetrieval quality is real offline (real embedder); latency is for the device in `measured_on`."),
        code("""stages = ("embed_ms", "search_ms", "generate_ms")
measured = {f"{s}_{q}": round(local_latency[f"{s}_{q}"], 3) for s in stages for q in ("p50", "p95")}
if api_latency:
    measured["api"] = {f"{s}_{q}": round(api_latency[f"{s}_{q}"], 1) for s in stages for q in ("p50", "p95")}
    measured["api"].update({m: api_quality[m] for m in ("hit_rate_at_1", "hit_rate_at_3", "hit_rate_at_5", "mrr")})
record(
    source=f"{hw['name']}, {lm.label} + {index.model_id}, {today()}",
    k=K,
    chunk_chars=CHUNK_CHARS,
    n_queries=N_QUERIES,
    embed_model=index.model_id,
    **{m: round(quality[m], 4) for m in ("hit_rate_at_1", "hit_rate_at_3", "hit_rate_at_5", "mrr")},
    **measured,
)"""),
        code("selfhost.unload(lm)"),
        md("""## Takeaways

- The RAG code is the same for both paths; only the embedder and the generator are swapped.
- Embedding a question with MiniLM and searching FAISS take milliseconds (measured above). With a real 7B model,
  **generation dominates**: 64 tokens at ≈16 tokens/s on a T4 (ANCHORS) is about 4 s. The stand-in's generation
  time is a toy's and says nothing about that.
- Retrieval quality is measurable without any LLM: hit rate @k and MRR on an eval set with known answer passages.
- Save indexes with their embedder's id and dimension: vectors from different models must never be mixed.

Back to the overview: [README](../README.md)."""),
    ]
    write_notebook(
        NB / "07_local_rag.ipynb",
        title="07 · Local RAG: MiniLM + FAISS + a self-hosted Mistral",
        learn="Build the retrieval pipeline of notebook 04 with nothing leaving the machine: all-MiniLM-L6-v2 "
              "embeddings, a cosine FAISS index saved with its model id, the same eval set (hit rate @k, MRR), and "
              "answers from the locally loaded model — then see where the time goes (embedding, search, generation; "
              "p50/p95), and, with an API key, the same questions through the API pipeline side by side.",
        runs_on="CPU ✓ (real embeddings and retrieval; stand-in LLM text meaningless) · API key optional (side-by-side) "
                "· GPU for real Mistral-7B answers",
        params=params,
        cells=cells,
    )



if __name__ == "__main__":
    builders = {"05": nb05, "06": nb06}
    if "nb07" in globals():
        builders["07"] = globals()["nb07"]
    for key in sys.argv[1:] or sorted(builders):
        builders[key]()
