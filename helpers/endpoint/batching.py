"""Continuous batching: concurrent requests share the model's decoding steps.

A small model on a CPU is bound by per-operation overhead, not arithmetic: one decoding step over 16 sequences costs
a few times a step over one, not 16 times (SmolLM2-135M on 2 cores: ~3.7x, `benchmarks/bench_decode.py`).
So the worker keeps a *batch* of active requests and advances all of them with one model call per step. A request
joins as soon as there is room (its prompt is prefilled alone, its KV cache then left-padded into the batch's) and
leaves the moment it finishes, so a short answer never waits for a long one (continuous batching, as in vLLM's
scheduler, without its paged memory).

What stays per request — everything but the model call. Each request is a `ChatEngine.session`: its own sampling
parameters and seeded generator, stop strings, streaming, cancellation, and its own grammar state. At every step the
batch hands each request *its* row of the logits; the request masks that row with its own `xgrammar` matcher
(free text, a forced tool call and a JSON schema can share one step), applies budget steering, samples, and tells its
matcher which token it took. A grammar never sees another request's tokens, and nothing about it changes how the
batch is built: the grammar acts after the model call, on one row, exactly as it does when the request runs alone.

What differs from running alone — only floating-point rounding. A row of a batched matrix product, and attention over
a left-padded cache, may sum in another order than the same row alone (CPU kernels are not batch-invariant: Thinking
Machines Lab, "Defeating Nondeterminism in LLM Inference", 2025), so logits agree to ~1e-4, not bit for bit. A greedy
choice can only flip where the two best tokens are closer than that; `tests/test_batching.py` checks that batched
and unbatched greedy answers are identical on its prompts (plain, forced tool call, JSON schema, with and without
prefix caching) and how close the logits are.

A request runs alone (a batch of one, stepped beside the shared batch) when it would not batch well: prompt plus
`max_tokens` longer than `SOLO_TOKENS`, since every row's cache is padded to the longest row's length.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Protocol

import torch

from .prompts import Completion, Prompt, SamplingParams

log = logging.getLogger("helpers.endpoint")

MAX_BATCH = 16  # requests decoding together (the worker's default)
SOLO_TOKENS = 2048  # prompt + max_tokens above this runs alone: padding every row to it would cost memory and time


class Request(Protocol):
    """What the scheduler needs of a queued request (the worker's job)."""

    prompt: Prompt
    params: SamplingParams
    cancelled: bool

    def on_text(self, text: str) -> None: ...
    def finish(self, gen: Completion) -> None: ...
    def fail(self, exc: Exception) -> None: ...
    def wants_stream(self) -> bool: ...


class _Row:
    __slots__ = ("req", "steps", "feed", "length")

    def __init__(self, req: Request, steps: Any, feed: list[int], length: int) -> None:
        self.req, self.steps, self.feed, self.length = req, steps, feed, length


def _left_pad(t: torch.Tensor, n: int) -> torch.Tensor:
    if n <= 0:
        return t
    return torch.cat([t.new_zeros(t.shape[0], t.shape[1], n, t.shape[3]), t], dim=2)


class Batch:
    """Up to `capacity` sequences decoding together: one left-padded KV cache, one model call per step for all."""

    def __init__(self, engine: Any, capacity: int) -> None:
        self.engine, self.capacity = engine, capacity
        self.rows: list[_Row] = []
        self.pads: list[int] = []  # left padding of each row in the shared cache
        self.cache: Any = None
        self.width = 0  # cache length, padding included

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def full(self) -> bool:
        return len(self.rows) >= self.capacity

    def admit(self, req: Request) -> None:
        """Prefill the request alone (reusing a cached prompt prefix), take its first token, and join the batch."""
        engine = self.engine
        past, reused = engine._reuse_prefix(req.prompt.ids)
        steps = engine.session(req.prompt, req.params, reused=reused,
                               on_text=req.on_text if req.wants_stream() else None,
                               cancelled=lambda: req.cancelled)
        try:
            feed = next(steps)
            feed = steps.send(engine.forward(past, [feed]))
        except StopIteration as done:  # finished at its first token (or cancelled before it)
            engine._keep_prefix(past, list(req.prompt.ids) + done.value.ids)
            req.finish(done.value)
            return
        except Exception as exc:
            log.exception("prefill failed")
            req.fail(exc)
            return
        length = past.get_seq_length()
        self._join(past, length)
        self.rows.append(_Row(req, steps, feed, length))
        # the request's own cache now holds its prompt and is no longer written (the batch holds padded copies):
        # keep it as the prefix the next request may share (a system prompt, few-shot examples)
        engine._keep_prefix(past, list(req.prompt.ids))

    def _join(self, past: Any, length: int) -> None:
        from transformers import DynamicCache

        kv = [(layer.keys, layer.values) for layer in past.layers]
        if self.cache is None:
            self.cache = DynamicCache(ddp_cache_data=kv)  # update() copies them into its own tensors
            self.width, self.pads = length, [0]
            return
        width = max(self.width, length)
        grow = width - self.width
        for layer, (k, v) in zip(self.cache.layers, kv, strict=True):
            layer.keys = torch.cat([_left_pad(layer.keys, grow), _left_pad(k, width - length)], dim=0)
            layer.values = torch.cat([_left_pad(layer.values, grow), _left_pad(v, width - length)], dim=0)
        self.pads = [p + grow for p in self.pads] + [width - length]
        self.width = width

    def step(self) -> None:
        """One model call for every row; each request takes its row of the logits; finished rows leave."""
        rows = self.rows
        mask = None
        if any(self.pads):
            mask = torch.ones(len(rows), self.width + 1, dtype=torch.long, device=self.engine.device)
            for i, pad in enumerate(self.pads):
                mask[i, :pad] = 0
        positions = torch.tensor([[r.length] for r in rows], device=self.engine.device)
        try:
            logits = self.engine.forward(self.cache, [r.feed for r in rows], attention_mask=mask,
                                         position_ids=positions)
        except Exception as exc:  # the model call failed: every request in it gets the error
            log.exception("batched decoding step failed")
            for r in rows:
                r.req.fail(exc)
            self.rows, self.pads, self.cache, self.width = [], [], None, 0
            return
        self.width += 1
        keep: list[int] = []
        for i, r in enumerate(rows):
            r.length += 1
            try:
                r.feed = r.steps.send(logits[i:i + 1])
                keep.append(i)
            except StopIteration as done:
                r.req.finish(done.value)
            except Exception as exc:  # one request's failure (e.g. in its grammar) ends only that request
                log.exception("generation failed")
                r.req.fail(exc)
        if len(keep) < len(rows):
            self._select(keep)

    def _select(self, keep: list[int]) -> None:
        if not keep:
            self.rows, self.pads, self.cache, self.width = [], [], None, 0
            return
        self.rows = [self.rows[i] for i in keep]
        self.pads = [self.pads[i] for i in keep]
        self.cache.batch_select_indices(torch.tensor(keep, device=self.engine.device))
        cut = min(self.pads)  # padding every remaining row has is dropped
        if cut:
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, cut:], layer.values[:, :, cut:]
            self.pads = [p - cut for p in self.pads]
            self.width -= cut


class Scheduler:
    """Admits queued requests into the shared batch (or alone, see module doc) and steps them; FIFO within each."""

    def __init__(self, engine: Any, max_batch: int = MAX_BATCH) -> None:
        self.engine = engine
        self.pending: deque[Request] = deque()
        self.shared = Batch(engine, max(1, int(max_batch)))
        self.solo = Batch(engine, 1)
        self.peak = 0  # the most requests ever decoding in one step of the shared batch
        self.solo_runs = 0  # requests that ran alone because they would not batch well

    @property
    def max_batch(self) -> int:
        return self.shared.capacity

    @max_batch.setter
    def max_batch(self, value: int) -> None:
        """Change the batch size between steps; rows already decoding finish (1 = batching off, one at a time)."""
        self.shared.capacity = max(1, int(value))

    def add(self, req: Request) -> None:
        self.pending.append(req)

    @property
    def busy(self) -> bool:
        return bool(self.pending or self.shared.rows or self.solo.rows)

    @property
    def waiting(self) -> int:
        return len(self.pending)

    def alone(self, req: Request) -> bool:
        """True when this request runs alone rather than in the shared batch."""
        return self.shared.capacity > 1 and len(req.prompt.ids) + req.params.max_tokens > SOLO_TOKENS

    @torch.inference_mode()
    def tick(self) -> None:
        """Admit what fits (prefill), then one decoding step for the shared batch and one for a lone request."""
        left: deque[Request] = deque()
        while self.pending:
            req = self.pending.popleft()
            if req.cancelled:  # the client left before its turn: nothing to send
                continue
            group = self.solo if self.alone(req) else self.shared
            if group.full:
                left.append(req)
                continue
            if group is self.solo:
                self.solo_runs += 1
            group.admit(req)
        self.pending = left
        for group in (self.shared, self.solo):
            if group.rows:
                if group is self.shared:
                    self.peak = max(self.peak, len(group))
                group.step()
