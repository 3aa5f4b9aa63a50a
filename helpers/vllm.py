"""A `vllm serve` command for one GPU, and the memory arithmetic behind it (notebook 10).

vLLM's own numbers appear when it starts; these are predicted from the model's config with vLLM's memory model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .device import GiB, GpuProfile, gib

# vLLM's memory model, as its docs describe it (docs.vllm.ai, "Engine Arguments" and "Conserving Memory", read
# 2026-12-01): `--gpu-memory-utilization` (default 0.9) is the share of the card's total memory this instance may use
# for weights, activations and the KV cache together; after loading the weights and a profiling run, what is left of
# that share becomes KV cache, which must hold at least one `--max-model-len` sequence or vLLM refuses to start.
VLLM_UTILIZATION = 0.9
# Activations of the profiling run, CUDA graphs and the non-torch context, inside the share: an allowance, not a
# measurement (vLLM prints its own numbers at start-up: compare them).
VLLM_OVERHEAD_BYTES = 1 * GiB
VLLM_LENGTHS = (32768, 16384, 8192, 4096, 2048)  # --max-model-len candidates, longest first (Mistral-7B-v0.3: 32k)
VLLM_MIN_SEQUENCES = 4  # a length is chosen only if the KV cache holds this many full-length sequences at once
VLLM_CHECKED = ("flags checked 2026-12-01 against vLLM's docs: tool calling ('Mistral Models': --tokenizer-mode "
                "mistral, --enable-auto-tool-choice --tool-call-parser mistral), BitsAndBytes (in-flight 4-bit with "
                "--quantization bitsandbytes, bitsandbytes on Turing and newer), engine arguments (--dtype half, "
                "--max-model-len, --gpu-memory-utilization); not run here: no GPU")


@dataclass(frozen=True)
class VllmPlan:
    """A `vllm serve` command for one GPU and the memory arithmetic behind it (predicted, vLLM's model)."""

    model: str
    profile: GpuProfile
    quantization: str | None  # None (fp16 weights) or "bitsandbytes" (in-flight 4-bit NF4)
    dtype: str  # "half" where the GPU has no native bf16 (a T4), else "auto"
    max_model_len: int
    utilization: float
    weights_bytes: int
    kv_bytes_per_token: int

    @property
    def budget_bytes(self) -> int:
        return int(self.utilization * self.profile.capacity_bytes)

    @property
    def kv_budget_bytes(self) -> int:
        """What is left of the share for the KV cache once weights and the overhead allowance are in."""
        return self.budget_bytes - self.weights_bytes - VLLM_OVERHEAD_BYTES

    @property
    def sequences(self) -> int:
        """Full `max_model_len` sequences the KV cache holds at once (0: vLLM would refuse to start)."""
        return max(0, self.kv_budget_bytes // (self.kv_bytes_per_token * self.max_model_len))

    def problems(self) -> list[str]:
        """Why this command would fail on its GPU (empty when it fits), in vLLM's terms."""
        out = []
        if self.weights_bytes + VLLM_OVERHEAD_BYTES > self.budget_bytes:
            out.append(f"weights {gib(self.weights_bytes)} + {gib(VLLM_OVERHEAD_BYTES)} overhead exceed "
                       f"--gpu-memory-utilization {self.utilization} × {gib(self.profile.capacity_bytes)} = "
                       f"{gib(self.budget_bytes)}")
        elif self.sequences < 1:
            out.append(f"the KV cache left ({gib(self.kv_budget_bytes)}) cannot hold one {self.max_model_len:,}-token "
                       f"sequence ({gib(self.kv_bytes_per_token * self.max_model_len)}): lower --max-model-len")
        if self.dtype != "half" and not self.profile.native_bf16:
            out.append(f"the {self.profile.name} has no native bf16: pass --dtype half")
        return out

    @property
    def fits(self) -> bool:
        return not self.problems()

    def command(self, port: int = 8000) -> str:
        parts = [f"vllm serve {self.model} --tokenizer-mode mistral"]
        if self.quantization:
            parts.append(f"--quantization {self.quantization}")  # in-flight 4-bit from the official weights
        else:
            parts.append("--config-format mistral --load-format mistral")
        parts += [f"--dtype {self.dtype}", f"--max-model-len {self.max_model_len}",
                  f"--gpu-memory-utilization {self.utilization}",
                  "--enable-auto-tool-choice --tool-call-parser mistral", f"--port {port}"]
        return " ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"gpu": self.profile.name, "command": self.command(), "fits": self.fits, "problems": self.problems(),
                "quantization": self.quantization, "dtype": self.dtype, "max_model_len": self.max_model_len,
                "budget_bytes": self.budget_bytes, "weights_bytes": self.weights_bytes,
                "kv_budget_bytes": self.kv_budget_bytes, "full_length_sequences": self.sequences,
                "kind": "predicted from the config with vLLM's memory model, not measured"}


def vllm_plan(config: Any, profile: GpuProfile, *, quantization: str | None = None, max_model_len: int = 32768,
              dtype: str | None = None, utilization: float = VLLM_UTILIZATION,
              model: str = "mistralai/Mistral-7B-Instruct-v0.3") -> VllmPlan:
    """The arithmetic for one `vllm serve` command (any flags) on a GPU; `.problems()` says why it would fail."""
    from . import memory

    precision = "nf4" if quantization == "bitsandbytes" else "fp16"
    weights = memory.weight_bytes(config, precision, rest_dtype="fp16") + memory.quant_constants_bytes(config, precision)
    return VllmPlan(model, profile, quantization, dtype or ("auto" if profile.native_bf16 else "half"), max_model_len,
                    utilization, weights, memory.kv_bytes_per_token(config, "fp16"))


def vllm_recipe(config: Any, profile: GpuProfile, model: str = "mistralai/Mistral-7B-Instruct-v0.3") -> VllmPlan:
    """A `vllm serve` command that fits this GPU: fp16 weights if they fit, else in-flight 4-bit; the longest
    `--max-model-len` whose KV cache holds VLLM_MIN_SEQUENCES full-length sequences; `--dtype half` without bf16."""
    for quantization in (None, "bitsandbytes"):
        for length in VLLM_LENGTHS:
            plan = vllm_plan(config, profile, quantization=quantization, max_model_len=length, model=model)
            if plan.fits and plan.sequences >= VLLM_MIN_SEQUENCES:
                return plan
    return vllm_plan(config, profile, quantization="bitsandbytes", max_model_len=VLLM_LENGTHS[-1], model=model)
