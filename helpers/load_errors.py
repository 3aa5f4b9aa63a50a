"""Errors that say what to do when a model will not load (gated, offline, misspelt): notebooks 05–08 and the endpoint.

A hub or transformers failure arrives as one of a dozen exception types with a message written for library
authors; `explain_load_error` reads the whole exception chain and answers with the fix (accept the licence and
set HF_TOKEN, go offline with the course's model, check the spelling).
"""

from __future__ import annotations

from .labels import SMOLLM


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why and what to try next."""


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _load_error_kind(exc: BaseException) -> str:
    """What went wrong fetching a model, from the whole exception chain: 'gated', 'offline', 'missing' or 'other'."""
    chain = _chain(exc)
    names = {type(e).__name__ for e in chain}
    text = " ".join(str(e) for e in chain).lower()
    if "GatedRepoError" in names or "gated" in text or "401" in text or "unauthorized" in text:
        return "gated"
    offline = {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectError", "ConnectionError",
               "ConnectTimeout", "NameResolutionError"}
    if names & offline or "offline" in text or "couldn't connect" in text or "cannot find the requested files" in text:
        return "offline"
    if "RepositoryNotFoundError" in names or "not a valid model identifier" in text:
        return "missing"
    return "other"


def explain_load_error(exc: BaseException, model: str) -> ModelLoadError:
    """Turn a hub/transformers loading error into one that says what to do (licence + HF_TOKEN, offline, typo)."""
    kind = _load_error_kind(exc)
    if kind == "gated":
        return ModelLoadError(
            f"{model} is gated on the Hugging Face hub: open https://huggingface.co/{model}, accept the licence "
            "with your account, then set HF_TOKEN (a read token from huggingface.co/settings/tokens; in Colab "
            "add it to secrets) and run again. Without access: LOCAL_MODEL='config:mistral-7b-instruct-v0.3' "
            "(the real size and shape with random weights: memory and speed are real, text is not) or "
            f"LOCAL_MODEL='{SMOLLM}' (SmolLM2-135M-Instruct: tiny, real, offline)."
        )
    if kind == "offline":
        return ModelLoadError(
            f"Cannot fetch {model!r}: the Hugging Face hub is unreachable (offline, or HF_HUB_OFFLINE=1) and it "
            f"is not in the local cache. Use LOCAL_MODEL='{SMOLLM}' (the offline model), a local folder with the "
            "weights, or run where the hub is reachable."
        )
    if kind == "missing":
        return ModelLoadError(
            f"{model!r} is not a model on the hub nor a local folder: check the spelling "
            f"(e.g. 'mistralai/Mistral-7B-Instruct-v0.3'), or use LOCAL_MODEL='{SMOLLM}' (offline)."
        )
    return ModelLoadError(f"Loading {model!r} failed: {type(exc).__name__}: {exc}")
