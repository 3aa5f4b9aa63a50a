"""Every knob of the course in one place: papermill parameter > environment variable > default.

A notebook passes its `parameters` cell values to :func:`resolve`; anything left as ``None`` falls
back to the environment, then to the default. The result says where each value came from, so a
learner can see *why* the course picked the mistral or the local backend.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from . import hooks
from .device import cuda_available
from .keys import (  # noqa: F401  (re-exported: settings.find_api_key, settings.Secret …)
    KEY_ENV,
    Secret,
    SettingsError,
    find_api_key,
    hf_token_available,
    in_colab,
    unattended,
)
from .labels import SMOLLM, SMOLLM_NOTE, STANDIN, STANDIN_NOTE, model_label, model_note  # noqa: F401  (re-exported)
from .paths import cache_dir, data_path, repo_root  # noqa: F401  (re-exported: settings.cache_dir …)

log = logging.getLogger(__name__)

BACKENDS = ("auto", "mistral", "local")
DEVICES = ("auto", "cpu", "cuda", "mps")
# `auto` on a CUDA GPU with a Hugging Face token: Ministral 3 3B, the model La Plateforme serves as ministral-3b-latest
# (Apache-2.0; its 16-bit weights, 7.7 GB, fit a T4 whole with room for a KV cache), so one model runs both ways.
DEFAULT_HUB_MODEL = "mistralai/Ministral-3-3B-Instruct-2512-BF16"
# Notebooks 06 and 07 tell the seed post's memory story (FP16 → INT8 → NF4 on a T4) with Mistral-7B.
MISTRAL_7B = "mistralai/Mistral-7B-Instruct-v0.3"
DEFAULT_LOCAL_EMBED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

# name: (environment variable, default, what it sets). docs/parameters.md's table mirrors this.
KNOBS: dict[str, tuple[str, str | None, str]] = {
    "BACKEND": ("COURSE_BACKEND", "auto", "`auto` (key found → `mistral`, else `local`), `mistral` or `local`"),
    "CHAT_MODEL": ("COURSE_CHAT_MODEL", "mistral-small-latest", "model name sent to `chat.complete` (API alias)"),
    "EMBED_MODEL": ("COURSE_EMBED_MODEL", "mistral-embed", "model name sent to `embeddings.create`"),
    "LOCAL_MODEL": (
        "COURSE_LOCAL_MODEL",
        "auto",
        f"what the local backend / self-host notebooks load: `auto` ({DEFAULT_HUB_MODEL} on a CUDA GPU "
        f"with `HF_TOKEN` set — {MISTRAL_7B} in 06 and 07 — else `{SMOLLM}`, the real but tiny "
        f"SmolLM2-135M-Instruct), `{SMOLLM}`, "
        f"`{STANDIN}` (random weights, Mistral tokenizer), `config:<name>` (real shape, random weights), "
        "a hub id or a local path",
    ),
    "LOCAL_EMBED_MODEL": (
        "COURSE_LOCAL_EMBED_MODEL",
        DEFAULT_LOCAL_EMBED_MODEL,
        "sentence-transformers model for local embeddings (all-MiniLM-L6-v2 loads from its packaged copy: no hub needed)",
    ),
    "DEVICE": ("COURSE_DEVICE", "auto", "`auto` (CUDA if present, else CPU), `cpu`, `cuda`, `mps`, or a GPU the "
               "course decides for while computing on the CPU"),
    "LOCAL_URL": (
        "COURSE_LOCAL_URL",
        None,
        "URL of an external Mistral-compatible server (e.g. vLLM) for `BACKEND=local`; "
        "empty = start the course's own endpoint on loopback",
    ),
}
LOCAL_KEY_ENV = "COURSE_LOCAL_API_KEY"  # bearer token for an external server started with an API key (vLLM --api-key)
API_URL_ENV = "COURSE_API_URL"  # BACKEND='mistral' sends to this URL instead of api.mistral.ai (a stand-in for tests)


@dataclass(frozen=True)
class Settings:
    """The resolved knobs of one notebook run, with where each came from."""

    backend: str
    requested_backend: str
    reason: str
    api_key: Secret | None
    chat_model: str
    embed_model: str
    local_model: str
    local_embed_model: str
    device: str
    local_url: str | None
    local_api_key: Secret | None = None
    sources: dict[str, str] = field(default_factory=dict)
    api_url: str | None = None  # where BACKEND='mistral' sends its calls: None is La Plateforme (api.mistral.ai)

    @property
    def gpu_model(self) -> str:
        """The model the GPU holds: `local_model`, whatever computes in its place."""
        return self.local_model

    @property
    def computes(self) -> str:
        """The model that really computes: `local_model`, unless DEVICE decides for a GPU this machine lacks (then a
        smaller one computes on the CPU while every load is counted at `local_model`'s size)."""
        return hooks.computes(self.local_model, self.device)

    @property
    def torch_device(self) -> str:
        """The device torch computes on (for `SentenceTransformer(device=...)` etc.)."""
        return resolve_device(self.device)

    def table(self) -> list[tuple[str, str, str]]:
        """Rows (knob, value, where it came from) for display; the key is masked."""
        rows = [
            ("BACKEND", f"{self.backend} (asked: {self.requested_backend})", self.sources.get("BACKEND", "")),
            ("MISTRAL_API_KEY", "found" if self.api_key else "not found",
             self.api_key.source if self.api_key else "-"),
            ("CHAT_MODEL", self.chat_model, self.sources.get("CHAT_MODEL", "")),
            ("EMBED_MODEL", self.embed_model, self.sources.get("EMBED_MODEL", "")),
            ("LOCAL_MODEL", self.local_model, self.sources.get("LOCAL_MODEL", "")),
            ("LOCAL_EMBED_MODEL", self.local_embed_model, self.sources.get("LOCAL_EMBED_MODEL", "")),
            ("DEVICE", self.device, self.sources.get("DEVICE", "")),
            *([("computes", self.computes, f"on the CPU, in place of {self.local_model}; the GPU ledger counts "
                 "the latter")] if self.computes != self.local_model else []),
            ("LOCAL_URL", self.local_url or "(course endpoint on loopback)", self.sources.get("LOCAL_URL", "")),
            *([("API URL", self.api_url, f"${API_URL_ENV}")] if self.api_url else []),
        ]
        return rows

    def describe(self) -> str:
        """One paragraph saying which backend runs and why (and who answers, when it is not api.mistral.ai)."""
        return f"Backend: {self.backend} — {self.reason}" + (f"; answers: {self.answered_by}" if self.api_url else "")

    @property
    def answered_by(self) -> str:
        """Who answers this run's chat calls, for labels and `record(source=...)`: e.g. 'La Plateforme'."""
        if self.backend == "mistral":
            return "La Plateforme" if self.api_url is None else hooks.api_answered_by(self.api_url)
        if self.local_url:
            return f"external server at {self.local_url}"
        place = hooks.placement(self.device)
        if place is not None:
            return (f"{model_label(self.computes)} on the course endpoint (CPU, in place of {self.local_model} on a "
                    f"{place.label})")
        return f"{model_label(self.computes)} on the course endpoint ({self.device.upper()})"

    @property
    def api_name(self) -> str:
        """A short name for who answers BACKEND='mistral' calls, for table columns: 'La Plateforme', or its stand-in."""
        return self.answered_by.split(" — ")[0] if self.backend == "mistral" else "La Plateforme"

    def show(self):
        """Print which backend answers and why (with what that model's answers mean); return the knob table."""
        print(self.describe())
        if self.backend == "local" and not self.local_url and (note := model_note(self.computes)):
            print("Answers come from " + note)
        import pandas as pd

        why = self.sources.get("LOCAL_MODEL", "").partition(": ")[2][:-1]  # auto's reason: said once (line above)
        rows = [(k, v, f.replace(": " + why, ": see above") if why and why in self.reason else f) for k, v, f in self.table()]
        return pd.DataFrame(rows, columns=["knob", "value", "from"]).set_index("knob")


# ---------------------------------------------------------------- resolution
def _pick(name: str, params: dict[str, object]) -> tuple[str | None, str]:
    env_name, default, _ = KNOBS[name]
    value = params.get(name)
    if value not in (None, ""):
        return str(value).strip(), "parameter"
    env = os.environ.get(env_name, "").strip()
    if env:
        return env, f"${env_name}"
    return default, "default"


def check_url(url: str, name: str = "LOCAL_URL") -> str:
    """An http(s) URL with a host, without a trailing slash; a clear error otherwise (e.g. a missing scheme)."""
    from urllib.parse import urlsplit

    text = url.strip().strip("'\"").rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            f"{name}={url!r} is not an http(s) URL. Write it in full, e.g. 'http://127.0.0.1:8000' "
            "(for vLLM: the address `vllm serve` prints)."
        )
    if parts.username or parts.password:
        raise SettingsError(
            f"{name} must not contain a user name or password (it is shown in outputs). "
            f"Put the server's token in ${LOCAL_KEY_ENV} instead."
        )
    return text


def resolve_device(device: str = "auto") -> str:
    """The torch device to compute on: `auto` → `cuda` when a GPU is present, else `cpu` (see also `hooks.placement`)."""
    device = (device or "auto").strip().lower()
    place = _placement(device)
    if place is not None:
        return place.compute_device
    if device not in DEVICES:
        raise SettingsError(f"DEVICE={device!r} is not one of {', '.join(DEVICES)}, or {hooks.device_help()}. "
                            "Use 'auto' unless you know better.")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise SettingsError(
            "DEVICE='cuda' but torch sees no CUDA GPU. In Colab: Runtime → Change runtime type → T4 GPU; "
            f"otherwise use DEVICE='auto' or 'cpu' (or {hooks.device_help()})."
        )
    return device


def check_device(device: str) -> str:
    """The DEVICE as the course keeps it: `cuda` / `cpu` / `mps`, or one `hooks.placement` knows, `auto` resolved."""
    text = (device or "auto").strip().lower()
    place = _placement(text)
    return place.device if place is not None else resolve_device(text)


def _placement(device: str):
    """`hooks.placement(device)`, its ValueError for an unknown name turned into a SettingsError."""
    try:
        return hooks.placement(device)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def resolve_local_model(local_model: str, device: str, *, token: bool | None = None,
                        auto_model: str = DEFAULT_HUB_MODEL) -> tuple[str, str]:
    """`auto` → `auto_model` (Ministral 3 3B; gated on the hub) on a CUDA GPU with a Hugging Face token, else
    SmolLM2-135M; (model, why).

    `token=True` decides as if a token were set (as the course does when it decides for a GPU this machine lacks).
    """
    if local_model.lower() != "auto":
        return local_model, "as asked"
    tiny = "SmolLM2-135M-Instruct"  # what its answers mean is said once, by the note (labels.SMOLLM_NOTE)
    if device != "cuda":
        return SMOLLM, f"no CUDA GPU, so {tiny}"
    if not (hf_token_available() if token is None else token):
        return SMOLLM, (
            f"a CUDA GPU is present but no Hugging Face token, and {auto_model} is gated: "
            f"accept its licence on the hub and set HF_TOKEN (or a Colab secret) to load it; until then {tiny}"
        )
    return auto_model, ("a CUDA GPU and a Hugging Face token are present" if token is None else
                               "as on a CUDA GPU with a Hugging Face token")


def resolve(
    BACKEND: str | None = None,
    CHAT_MODEL: str | None = None,
    EMBED_MODEL: str | None = None,
    LOCAL_MODEL: str | None = None,
    LOCAL_EMBED_MODEL: str | None = None,
    DEVICE: str | None = None,
    LOCAL_URL: str | None = None,
    MISTRAL_API_KEY: str | None = None,
    *,
    announce: bool = False,
    auto_model: str = DEFAULT_HUB_MODEL,
) -> Settings:
    """Resolve every knob (parameter > env > default) and pick the backend, saying which and why.

    `auto_model` is what LOCAL_MODEL='auto' loads on a CUDA GPU with a token (06 and 07 pass MISTRAL_7B)."""
    hooks.guard_parameters()  # a key passed as a papermill parameter stops the run here
    params = dict(
        BACKEND=BACKEND, CHAT_MODEL=CHAT_MODEL, EMBED_MODEL=EMBED_MODEL, LOCAL_MODEL=LOCAL_MODEL,
        LOCAL_EMBED_MODEL=LOCAL_EMBED_MODEL, DEVICE=DEVICE, LOCAL_URL=LOCAL_URL,
    )
    values: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    for name in KNOBS:
        values[name], sources[name] = _pick(name, params)

    requested = (values["BACKEND"] or "auto").lower()
    if requested not in BACKENDS:
        raise SettingsError(
            f"BACKEND={values['BACKEND']!r} is not one of {', '.join(BACKENDS)} "
            f"(set by {sources['BACKEND']}). Use 'auto' to let the course choose."
        )
    device = check_device(values["DEVICE"] or "auto")
    place = _placement(device)
    if place is not None:  # decide as on that GPU with a token; the loader swaps in what computes
        local_model, local_why = resolve_local_model(values["LOCAL_MODEL"] or "auto", "cuda", token=True,
                                                    auto_model=auto_model)
        computing = hooks.computes(local_model, device)
        if computing != local_model:
            local_why = f"{local_why}; on the {place.label}, {model_label(computing)} computes in its place on the CPU"
    else:
        local_model, local_why = resolve_local_model(values["LOCAL_MODEL"] or "auto", device, auto_model=auto_model)
    if (values["LOCAL_MODEL"] or "auto").lower() == "auto":
        sources["LOCAL_MODEL"] += f" (auto → {local_model}: {local_why})"

    key = find_api_key(MISTRAL_API_KEY, ask=(requested == "mistral"))
    if requested == "mistral":
        if key is None:
            raise SettingsError(
                f"BACKEND='mistral' but no API key was found. Set ${KEY_ENV}, add it to Colab secrets "
                f"(key icon → {KEY_ENV}, allow notebook access), or run with BACKEND='local'."
            )
        backend, reason = "mistral", "asked for BACKEND='mistral'; API key from " + key.source
    elif requested == "local":
        backend, reason = "local", f"asked for BACKEND='local'; serving {local_model} ({local_why})"
    elif key is not None:
        backend, reason = "mistral", f"BACKEND='auto' and an API key was found ({key.source})"
    else:
        backend, reason = "local", (
            f"BACKEND='auto' and no API key was found, so the local endpoint serves {local_model} "
            f"({local_why}). For La Plateforme, add {KEY_ENV} (environment or Colab secret) before you run, or add it "
            "and re-run from this cell (or restart)."
        )
    if values["LOCAL_URL"]:
        values["LOCAL_URL"] = check_url(values["LOCAL_URL"])
        if backend == "local":
            reason += f"; external server at {values['LOCAL_URL']}"
    local_token = os.environ.get(LOCAL_KEY_ENV, "").strip()
    api_url = os.environ.get(API_URL_ENV, "").strip()

    settings = Settings(
        backend=backend,
        requested_backend=requested,
        reason=reason,
        api_key=key,
        chat_model=values["CHAT_MODEL"] or "",
        embed_model=values["EMBED_MODEL"] or "",
        local_model=local_model,
        local_embed_model=values["LOCAL_EMBED_MODEL"] or DEFAULT_LOCAL_EMBED_MODEL,
        device=device,
        local_url=values["LOCAL_URL"] or None,
        local_api_key=Secret(local_token, f"${LOCAL_KEY_ENV}") if local_token else None,
        sources=sources,
        api_url=check_url(api_url, API_URL_ENV) if api_url else None,
    )
    log.info("resolved settings: backend=%s (%s)", backend, reason)
    if announce:
        print(settings.describe())
    return settings
