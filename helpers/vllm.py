"""Serving a Mistral model with vLLM on one GPU: the `vllm serve` command, and the memory arithmetic behind it.

Used by notebook 10 (serving under load). Everything here is checked against vLLM 0.34.0's own code by
`make vllm-check` (its CLI parser for the command, its request models for the requests), not only its docs:

- Weights, activations and the KV cache share `--gpu-memory-utilization` × the card's memory. What is left after the
  weights (and vLLM's profiling run) becomes KV cache, which must hold at least one `--max-model-len` sequence or
  vLLM refuses to start. The flag's default moved (0.92 in 0.24–0.33; unset in 0.34: 1.0 with its extensible KV
  cache, else 0.92), so the recipe always sets it.
- A T4 (compute capability 7.5) has no native bf16: `--dtype half`. vLLM dropped `--quantization bitsandbytes` in
  0.28.0, so a model that does not fit in fp16 needs a checkpoint quantized in advance (AWQ/GPTQ) instead.
- vLLM needs its own environment: 0.34.0 pins torch 2.14.0 and transformers < 5.23, and its default PyPI wheel is
  built for CUDA 13 (it links libcudart.so.13), which Colab's CUDA 12 stack cannot load. See `colab_install()`.
- Its OpenAI server reads `seed` (the Mistral SDK sends `random_seed`, which vLLM ignores) and takes `tool_choice`
  "none", "auto", "required" or a named function — not Mistral's "any". See `to_vllm_request()`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .device import gib  # noqa: F401  (vllm.gib: the GiB figures notebook 10 prints)
from .memory import count_parameters, kv_bytes_per_token

GiB = 2**30
VLLM_VERSION = "0.34.0"  # the release `make vllm-check` checks against (2026-11-16; read 2026-12-06)
# Our choice, set explicitly: 0.9 leaves ~1.5 GiB of a T4 outside vLLM's share for the notebook's own process (the
# course endpoint, a model a notebook loaded) — vLLM does not see memory another process takes after it starts.
UTILIZATION = 0.9
# Activations of vLLM's profiling run, CUDA graphs and the non-torch context, inside the share: an allowance, not a
# measurement (vLLM logs its own figures at start-up: compare them).
OVERHEAD_BYTES = 1 * GiB
LENGTHS = (32768, 16384, 8192, 4096, 2048)  # --max-model-len candidates, longest first
MIN_SEQUENCES = 4  # a length is chosen only if the KV cache holds this many full-length sequences at once
# Mistral's own checkpoint format (params.json, consolidated.safetensors, the tekken/v3 tokenizer) and its tool
# calling, as vLLM's recipe for the Ministral 3 Instruct family gives them (recipes.vllm.ai, read 2026-12-06).
MISTRAL_FORMAT = ("--tokenizer-mode", "mistral", "--config-format", "mistral", "--load-format", "mistral")
TOOL_CALLING = ("--enable-auto-tool-choice", "--tool-call-parser", "mistral")


@dataclass(frozen=True)
class Checkpoint:
    """A model as vLLM downloads it: hub id, the config the course ships for it, its format and quantization."""

    hub_id: str
    config: str  # folder name under data/configs
    mistral_format: bool  # params.json + consolidated weights (Mistral's format) rather than HF's config.json
    quantization: str | None = None  # None: 16-bit weights; "awq": 4-bit weights quantized in advance
    note: str = ""


CHECKPOINTS: dict[str, Checkpoint] = {
    "ministral-3-3b": Checkpoint(
        "mistralai/Ministral-3-3B-Instruct-2512-BF16", "ministral-3-3b-instruct-2512", True,
        note="Ministral 3 3B Instruct (2025-12-02, Apache-2.0), 16-bit weights: the model La Plateforme serves as "
             "ministral-3b-latest, 7.7 GB in fp16, whole on a T4. (The plain -Instruct-2512 repo holds FP8 weights.)"),
    "mistral-7b": Checkpoint(
        "mistralai/Mistral-7B-Instruct-v0.3", "mistral-7b-instruct-v0.3", True,
        note="Mistral-7B-Instruct-v0.3 (2024-05-22), 14.5 GB in fp16: too big for vLLM on a T4."),
    "mistral-7b-awq": Checkpoint(
        "solidrust/Mistral-7B-Instruct-v0.3-AWQ", "mistral-7b-instruct-v0.3", False, "awq",
        note="AutoAWQ 4-bit (group 128) of Mistral-7B-Instruct-v0.3, uploaded 2024-05-23 (the repo's commit history, "
             "read 2026-12-06); vLLM's AWQ kernel needs compute capability 7.5 (a T4 has it). A community "
             "checkpoint in HF format: served with vLLM's default tokenizer mode."),
}


def weights_bytes(config: Any, quantization: str | None = None) -> int:
    """GPU bytes of the weights as vLLM loads them: fp16, or AWQ 4-bit (linear layers only) with its scales."""
    counts = count_parameters(config)  # built on the meta device: shapes only
    if quantization is None:
        return counts.total * 2
    if quantization != "awq":
        raise ValueError(f"quantization={quantization!r}: this recipe knows fp16 (None) and 'awq'")
    # AWQ keeps 4 bits per weight plus, per group of 128, one fp16 scale and one 4-bit zero point
    return int(counts.total * 2 - counts.quantizable * 2 + counts.quantizable * (0.5 + 2.5 / 128))


def max_positions(config: Any) -> int:
    text = getattr(config, "text_config", None) or config
    return int(getattr(text, "max_position_embeddings", None) or max(LENGTHS))


@dataclass(frozen=True)
class VllmPlan:
    """One `vllm serve` command for one GPU, and vLLM's memory arithmetic for it (predicted, not measured)."""

    checkpoint: Checkpoint
    gpu: Any  # anything with .name, .capacity_bytes, .native_bf16 (helpers.device.GpuProfile)
    dtype: str  # "half" where the GPU has no native bf16 (a T4), else "auto"
    max_model_len: int
    utilization: float
    weights_bytes: int
    kv_bytes_per_token: int
    positions: int  # the model's longest context

    @property
    def budget_bytes(self) -> int:
        return int(self.utilization * self.gpu.capacity_bytes)

    @property
    def kv_budget_bytes(self) -> int:
        """What is left of vLLM's share for the KV cache once the weights and the overhead allowance are in."""
        return self.budget_bytes - self.weights_bytes - OVERHEAD_BYTES

    @property
    def sequences(self) -> int:
        """Full `max_model_len` sequences the KV cache holds at once (0: vLLM would refuse to start)."""
        return max(0, self.kv_budget_bytes // (self.kv_bytes_per_token * self.max_model_len))

    def problems(self) -> list[str]:
        """Why this command would fail on its GPU (empty when it fits), in vLLM's terms."""
        out = []
        if self.weights_bytes + OVERHEAD_BYTES > self.budget_bytes:
            out.append(f"weights {self.weights_bytes / GiB:.2f} GiB + {OVERHEAD_BYTES / GiB:.2f} GiB overhead exceed "
                       f"--gpu-memory-utilization {self.utilization} × {self.gpu.capacity_bytes / GiB:.2f} GiB = "
                       f"{self.budget_bytes / GiB:.2f} GiB: use a quantized checkpoint or a bigger GPU")
        elif self.sequences < 1:
            need = self.kv_bytes_per_token * self.max_model_len / GiB
            out.append(f"the KV cache left ({self.kv_budget_bytes / GiB:.2f} GiB) cannot hold one "
                       f"{self.max_model_len:,}-token sequence ({need:.2f} GiB): lower --max-model-len")
        if self.max_model_len > self.positions:
            out.append(f"--max-model-len {self.max_model_len:,} exceeds the model's {self.positions:,} positions")
        if self.dtype != "half" and not self.gpu.native_bf16:
            out.append(f"the {self.gpu.name} has no native bf16: pass --dtype half")
        return out

    @property
    def fits(self) -> bool:
        return not self.problems()

    def argv(self, port: int = 8000) -> list[str]:
        """The command as a list of arguments (what `make vllm-check` hands to vLLM's own parser)."""
        args = ["vllm", "serve", self.checkpoint.hub_id]
        if self.checkpoint.mistral_format:
            args += MISTRAL_FORMAT
        if self.checkpoint.quantization:
            args += ["--quantization", self.checkpoint.quantization]
        args += ["--dtype", self.dtype, "--max-model-len", str(self.max_model_len),
                 "--gpu-memory-utilization", str(self.utilization), *TOOL_CALLING, "--port", str(port)]
        return args

    def command(self, port: int = 8000) -> str:
        return " ".join(self.argv(port))

    def as_dict(self) -> dict[str, Any]:
        return {"gpu": self.gpu.name, "model": self.checkpoint.hub_id, "command": self.command(),
                "fits": self.fits, "problems": self.problems(), "dtype": self.dtype,
                "max_model_len": self.max_model_len, "utilization": self.utilization,
                "budget_bytes": self.budget_bytes, "weights_bytes": self.weights_bytes,
                "kv_budget_bytes": self.kv_budget_bytes, "full_length_sequences": self.sequences,
                "vllm_version": VLLM_VERSION, "kind": "predicted from the config with vLLM's memory model"}


def _checkpoint(model: str | Checkpoint) -> Checkpoint:
    if isinstance(model, Checkpoint):
        return model
    if model not in CHECKPOINTS:
        raise ValueError(f"model={model!r}: known checkpoints are {', '.join(CHECKPOINTS)} (or pass a Checkpoint)")
    return CHECKPOINTS[model]


def vllm_plan(config: Any, gpu: Any, model: str | Checkpoint = "ministral-3-3b", *, max_model_len: int = 8192,
              utilization: float = UTILIZATION, dtype: str | None = None) -> VllmPlan:
    """The arithmetic for one `vllm serve` command (any flags) on a GPU; `.problems()` says why it would fail."""
    ckpt = _checkpoint(model)
    return VllmPlan(ckpt, gpu, dtype or ("auto" if gpu.native_bf16 else "half"), max_model_len, utilization,
                    weights_bytes(config, ckpt.quantization), kv_bytes_per_token(config, "fp16"), max_positions(config))


def vllm_recipe(config: Any, gpu: Any, model: str | Checkpoint = "ministral-3-3b") -> VllmPlan:
    """A `vllm serve` command for this GPU: the longest `--max-model-len` (up to the model's own) whose KV cache holds
    MIN_SEQUENCES full-length sequences, `--dtype half` without bf16. If nothing fits, the shortest plan comes back
    with `.problems()` saying why (for Mistral-7B on a T4: pick the "mistral-7b-awq" checkpoint)."""
    first = vllm_plan(config, gpu, model, max_model_len=LENGTHS[0])  # the weights are counted once
    plans = [replace(first, max_model_len=n) for n in LENGTHS if n <= first.positions] or [first]
    for plan in plans:
        if plan.fits and plan.sequences >= MIN_SEQUENCES:
            return plan
    return plans[-1]


def colab_install(version: str = VLLM_VERSION, cuda: str = "128") -> list[str]:
    """Shell lines that install vLLM on Colab in its own venv, from the CUDA 12.x build matching Colab's torch
    (2.11.0+cu128), leaving the course's environment alone; start the server from that venv's `vllm`.

    `uv venv`, not `python -m venv`: Colab's Python has no `ensurepip` (public reports: microsoft/bioemu#120,
    2025-05-06; passagemath#1627, 2025-10-08). The empty UV_CONSTRAINT/UV_BUILD_CONSTRAINT drop the constraints Colab
    sets for its own packages (googlecolab/colabtools#5237), which would hold the venv to Colab's torch.
    """
    wheel = (f"https://github.com/vllm-project/vllm/releases/download/v{version}/"
             f"vllm-{version}+cu{cuda}-cp38-abi3-manylinux_2_28_x86_64.whl")
    return ["uv venv /content/vllm-env",
            "UV_CONSTRAINT= UV_BUILD_CONSTRAINT= uv pip install --python /content/vllm-env/bin/python \\\n"
            f"        {wheel} \\\n        --extra-index-url https://download.pytorch.org/whl/cu{cuda}",
            "# then: /content/vllm-env/bin/vllm serve ... (in a terminal, or with subprocess.Popen from the notebook)"]


def to_vllm_request(request: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A Mistral-style chat request as vLLM's OpenAI server reads it, with a note for each change.

    `random_seed` becomes `seed` (vLLM ignores `random_seed`: its request model allows unknown fields and drops
    them); `tool_choice="any"` becomes "required" (vLLM answers 400 to "any"; La Plateforme takes both).
    """
    out, notes = dict(request), []
    if "random_seed" in out:
        out["seed"] = out.pop("random_seed")
        notes.append("random_seed → seed: vLLM reads `seed` and silently ignores `random_seed`")
    if out.get("tool_choice") == "any":
        out["tool_choice"] = "required"
        notes.append('tool_choice "any" → "required": vLLM takes none/auto/required/a named function')
    return out, notes
