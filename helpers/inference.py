"""Run a loaded model (notebooks 05–07, the local playground): chat-generate, stream, time tokens/s, score a text.

Notebook 05 shows `apply_chat_template` + `model.generate` + `TextIteratorStreamer` in its own cells; these are the
same calls as functions, for what repeats: greedy vs sampled runs, speed at batch 1, perplexity and top-1 agreement.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .selfhost import LoadedModel

# ---------------------------------------------------------------- generation
Messages = list[dict[str, str]]


def _as_messages(prompt: str | Messages) -> Messages:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


def chat_inputs(lm: LoadedModel, prompt: str | Messages) -> dict[str, Any]:
    """Render messages with the model's chat template → input_ids + attention_mask on the model's device."""
    enc = lm.tokenizer.apply_chat_template(
        _as_messages(prompt), add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    device = lm.model.device
    return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}


def generation_kwargs(lm: LoadedModel, max_new_tokens: int = 64, temperature: float = 0.7, top_p: float = 0.95,
                      do_sample: bool = False, min_new_tokens: int | None = None) -> dict[str, Any]:
    """The `generate` arguments: sampling knobs only when sampling (greedy ignores them), pad_token_id always."""
    kw: dict[str, Any] = {
        "max_new_tokens": int(max_new_tokens),
        "do_sample": bool(do_sample),
        "pad_token_id": lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else lm.tokenizer.eos_token_id,
    }
    if do_sample:
        kw["temperature"] = float(temperature)
        kw["top_p"] = float(top_p)
    else:  # explicit neutral values: silences "temperature is set but do_sample=False" warnings
        kw["temperature"] = None
        kw["top_p"] = None
        kw["top_k"] = None
    if min_new_tokens:
        kw["min_new_tokens"] = int(min_new_tokens)
    return kw


@dataclass
class Generation:
    """One generation: the text, token counts and speed."""

    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float
    token_ids: list[int]

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else float("nan")


def _sync(lm: LoadedModel) -> None:
    if lm.device == "cuda":
        import torch

        torch.cuda.synchronize()


def generate(lm: LoadedModel, prompt: str | Messages, max_new_tokens: int = 64, temperature: float = 0.7,
             top_p: float = 0.95, do_sample: bool = False, seed: int | None = None,
             min_new_tokens: int | None = None) -> Generation:
    """Chat-generate a reply: template applied, attention_mask passed, pad_token_id set, timed."""
    import torch

    if seed is not None:
        torch.manual_seed(seed)
    inputs = chat_inputs(lm, prompt)
    kw = generation_kwargs(lm, max_new_tokens, temperature, top_p, do_sample, min_new_tokens)
    _sync(lm)
    started = time.perf_counter()
    with torch.inference_mode():
        out = lm.model.generate(**inputs, **kw)
    _sync(lm)
    seconds = time.perf_counter() - started
    new = out[0, inputs["input_ids"].shape[1]:]
    return Generation(
        text=lm.tokenizer.decode(new, skip_special_tokens=True),
        prompt_tokens=int(inputs["input_ids"].shape[1]),
        new_tokens=int(new.shape[0]),
        seconds=seconds,
        token_ids=new.tolist(),
    )


def stream(lm: LoadedModel, prompt: str | Messages, max_new_tokens: int = 64, temperature: float = 0.7,
           top_p: float = 0.95, do_sample: bool = False) -> Iterator[str]:
    """Yield the reply piece by piece as it is generated (a TextIteratorStreamer fed by a background thread)."""
    import torch
    from transformers import TextIteratorStreamer

    inputs = chat_inputs(lm, prompt)
    streamer = TextIteratorStreamer(lm.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=120)
    kw = generation_kwargs(lm, max_new_tokens, temperature, top_p, do_sample)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with torch.inference_mode():
                lm.model.generate(**inputs, **kw, streamer=streamer)
        except BaseException as exc:  # surface it in the caller's thread instead of hanging the loop
            errors.append(exc)
            streamer.end()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    yield from streamer
    thread.join()
    if errors:
        raise errors[0]


def tokens_per_second(lm: LoadedModel, prompt: str | Messages = "Tell me about the Mistral wind.",
                      new_tokens: int = 32, repeats: int = 3, warmup: int = 1) -> float:
    """Decode speed at batch 1: median of `repeats` greedy runs forced to make exactly `new_tokens` tokens."""
    for _ in range(warmup):
        generate(lm, prompt, max_new_tokens=4, min_new_tokens=4)
    runs = [generate(lm, prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens).tokens_per_s
            for _ in range(repeats)]
    return float(statistics.median(runs))


# ---------------------------------------------------------------- quality over a text
@dataclass
class TextScore:
    """How a model predicts a text: perplexity and its top-1 guess for every next token."""

    perplexity: float
    n_tokens: int  # tokens predicted (text tokens minus the first of each window)
    top1: list[int]  # argmax next-token id at every predicted position
    token_nll: list[float] = field(default_factory=list)  # each predicted token's loss (nats), for intervals

    def as_dict(self) -> dict[str, Any]:
        return {"perplexity": self.perplexity, "n_tokens": self.n_tokens}


def score_text(lm: LoadedModel, text: str, window: int = 512) -> TextScore:
    """Perplexity of `text` (exp of mean next-token loss) and the top-1 predictions, in non-overlapping windows."""
    import math

    import torch

    ids = lm.tokenizer(text, return_tensors="pt")["input_ids"][0]
    total_nll = 0.0
    count = 0
    top1: list[int] = []
    token_nll: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(ids) - 1, window):
            chunk = ids[start:start + window].unsqueeze(0).to(lm.model.device)
            if chunk.shape[1] < 2:
                break
            logits = lm.model(input_ids=chunk, attention_mask=torch.ones_like(chunk)).logits.float()
            pred = logits[0, :-1]
            target = chunk[0, 1:]
            losses = torch.nn.functional.cross_entropy(pred, target, reduction="none")
            total_nll += float(losses.sum())
            token_nll.extend(losses.tolist())
            count += int(target.numel())
            top1.extend(pred.argmax(-1).tolist())
    return TextScore(perplexity=math.exp(total_nll / count) if count else float("nan"), n_tokens=count, top1=top1,
                     token_nll=token_nll)


def perplexity_ratio_interval(base: TextScore, other: TextScore, n_boot: int = 2000,
                              seed: int = 0) -> tuple[float, float, float]:
    """(ratio, low, high): other's perplexity over base's on the same text, with a 95% paired-bootstrap interval.

    Resampling the text's token positions shows how large a difference this text can resolve: an interval that
    contains 1.0 means the two models cannot be told apart on it.
    """
    import math

    import numpy as np

    if len(base.token_nll) != len(other.token_nll) or not base.token_nll:
        raise ValueError("score the same text with both models (score_text) before comparing them")
    diff = np.asarray(other.token_nll) - np.asarray(base.token_nll)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n_boot, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return math.exp(float(diff.mean())), math.exp(float(low)), math.exp(float(high))


def top1_agreement(a: TextScore, b: TextScore) -> float:
    """Share of positions where two models' most likely next token is the same (1.0 = identical choices)."""
    if len(a.top1) != len(b.top1) or not a.top1:
        raise ValueError(f"scores cover different texts ({len(a.top1)} vs {len(b.top1)} positions)")
    return sum(x == y for x, y in zip(a.top1, b.top1, strict=True)) / len(a.top1)
