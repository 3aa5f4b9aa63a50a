"""Run a loaded model (notebooks 06–10, the local playground): chat-generate, stream, time tokens/s.

Notebook 06 shows `apply_chat_template` + `model.generate` + `TextIteratorStreamer` in its own cells; these are the
same calls as functions, for what repeats: greedy vs sampled runs, speed at batch 1.
(07's quality measures, perplexity and top-1 agreement, are in `helpers/course/evals/quality.py`.)
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
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


