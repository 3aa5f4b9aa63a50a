"""Measuring what quantization costs in quality (notebook 07): perplexity on a fixed text and top-1 agreement.

Perplexity is exp(mean negative log-likelihood per token) of a text under the model: lower means the text surprised it
less. Top-1 agreement is the share of positions where two models rank the same next token first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...selfhost import LoadedModel


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



def run_problems(results: Any, baseline: str, real_model: bool) -> list[str]:
    """What 07's run must show ([] when it holds): every footprint within 1% of its estimate and the baseline agreeing
    with itself; and, for a real model (most weights in Linear layers) with an fp32 baseline, int8 and nf4, what its
    chart should show: INT8 at most half the baseline's bytes, NF4 below INT8, the baseline's perplexity below 200
    and INT8's top-1 agreement at least 0.7."""
    r, problems = results, []
    for p, row in r.iterrows():
        if abs(row.estimated_bytes / row.footprint_bytes - 1) >= 0.01:
            problems.append(f"{p}: estimate {row.estimated_bytes:,} B is not within 1% of {row.footprint_bytes:,} B")
    if r.loc[baseline, "top1_agreement"] != 1.0:
        problems.append(f"the baseline agrees with itself on only {r.loc[baseline, 'top1_agreement']}")
    if not real_model or baseline != "fp32" or not {"int8", "nf4"} <= set(r.index):
        return problems
    if r.loc["int8", "footprint_bytes"] > 0.5 * r.loc["fp32", "footprint_bytes"]:
        problems.append(f"int8 weighs more than half of fp32: {r.loc['int8', 'footprint_bytes']:,} B")
    if r.loc["nf4", "footprint_bytes"] >= r.loc["int8", "footprint_bytes"]:
        problems.append("nf4 is not smaller than int8")
    if r.loc["fp32", "perplexity"] >= 200:
        problems.append(f"the baseline's perplexity is {r.loc['fp32', 'perplexity']} (a real model stays below 200)")
    if r.loc["int8", "top1_agreement"] < 0.7:
        problems.append(f"int8 agrees with fp32 on only {r.loc['int8', 'top1_agreement']:.2f} of positions")
    return problems
