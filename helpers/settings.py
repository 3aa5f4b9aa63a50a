"""Every knob of the course in one place: papermill parameter > environment variable > default.

A notebook passes its `parameters` cell values to :func:`resolve`; anything left as ``None`` falls
back to the environment, then to the default. The result says where each value came from, so a
learner can see *why* the course picked the mistral or the local backend.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass, field

from .device import PROFILES, TWIN_PREFIX, cuda_available, twin_profile
from .labels import SMOLLM, SMOLLM_NOTE, STANDIN, STANDIN_NOTE, model_label, model_note  # noqa: F401  (re-exported)
from .paths import cache_dir, data_path, repo_root  # noqa: F401  (re-exported: settings.cache_dir …)

log = logging.getLogger(__name__)

BACKENDS = ("auto", "mistral", "local")
DEVICES = ("auto", "cpu", "cuda", "mps")
DEFAULT_HUB_MODEL = "mistralai/Mistral-7B-Instruct-v0.3"
DEFAULT_LOCAL_EMBED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

# name: (environment variable, default, what it sets). The README's parameter table mirrors this.
KNOBS: dict[str, tuple[str, str | None, str]] = {
    "BACKEND": ("COURSE_BACKEND", "auto", "`auto` (key found → `mistral`, else `local`), `mistral` or `local`"),
    "CHAT_MODEL": ("COURSE_CHAT_MODEL", "mistral-small-latest", "model name sent to `chat.complete` (API alias)"),
    "EMBED_MODEL": ("COURSE_EMBED_MODEL", "mistral-embed", "model name sent to `embeddings.create`"),
    "LOCAL_MODEL": (
        "COURSE_LOCAL_MODEL",
        "auto",
        f"what the local backend / self-host notebooks load: `auto` ({DEFAULT_HUB_MODEL} on a CUDA GPU "
        f"with `HF_TOKEN` set, else `{SMOLLM}`, the real but tiny SmolLM2-135M-Instruct), `{SMOLLM}`, "
        f"`{STANDIN}` (random weights, Mistral tokenizer), `config:<name>` (real shape, random weights), "
        "a hub id or a local path",
    ),
    "LOCAL_EMBED_MODEL": (
        "COURSE_LOCAL_EMBED_MODEL",
        DEFAULT_LOCAL_EMBED_MODEL,
        "sentence-transformers model for local embeddings (all-MiniLM-L6-v2 loads from its packaged copy: no hub needed)",
    ),
    "DEVICE": ("COURSE_DEVICE", "auto", "`auto` (CUDA if present, else CPU), `cpu`, `cuda`, `mps`, or a GPU twin "
               "(`twin:t4`, `twin:l4`, `twin:a100-40gb`: decide everything as on that GPU with an HF token, compute "
               "on the CPU with SmolLM2, count GPU memory at the real model's footprint)"),
    "LOCAL_URL": (
        "COURSE_LOCAL_URL",
        None,
        "URL of an external Mistral-compatible server (e.g. vLLM) for `BACKEND=local`; "
        "empty = start the course's own endpoint on loopback",
    ),
}
KEY_ENV = "MISTRAL_API_KEY"
LOCAL_KEY_ENV = "COURSE_LOCAL_API_KEY"  # bearer token for an external server started with an API key (vLLM --api-key)


class SettingsError(ValueError):
    """A knob has a value the course cannot use; the message says which and what to do."""


# a parameter name that holds a secret (MISTRAL_API_KEY, HF_TOKEN…), but not MAX_TOKENS or NEW_TOKENS
SECRET_NAME = re.compile(r"API_?KEY|(^|_)KEY$|(^|_)TOKEN$|SECRET|PASSWORD|PASSWD", re.I)
_KEY_LIKE = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9_-]{24,}$"  # 32 alphanumerics; a known prefix from 8 on
                       r"|^((sk|pk|rk|hf|gh[pos]|glpat|xox[abprs])[-_]|AKIA)(?=.*\d)[A-Za-z0-9_-]{8,}$")


def looks_like_key(value: object) -> bool:
    """True for a string shaped like an API key or token: 24+ letters and digits, or a known key prefix (sk-, hf_…)."""
    return isinstance(value, str) and bool(_KEY_LIKE.match(value.strip().strip("'\"")))


def refuse_injected_secrets() -> None:
    """Stop a notebook whose papermill parameters carry a key: papermill writes them into the output notebook.

    Papermill injects its parameters as a cell starting with ``# Parameters``; this reads that cell from the
    kernel's input history (outside a kernel it does nothing) and refuses secret-named or key-shaped values.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    for source in (shell.user_ns.get("In", []) if shell is not None else []) or []:
        if not isinstance(source, str) or not source.lstrip().startswith("# Parameters"):
            continue
        for line in source.splitlines():
            found = re.match(r"\s*([A-Za-z_]\w*)\s*=\s*(.+?)\s*$", line)
            if found and (SECRET_NAME.search(found.group(1)) or looks_like_key(found.group(2))):
                raise SettingsError(
                    f"The notebook parameter {found.group(1)} looks like a secret. Papermill writes every parameter "
                    "into the executed notebook, so the key would be saved in it: delete that output file, then "
                    f"pass keys through the environment instead (e.g. {KEY_ENV}=… papermill …, or "
                    f"{KEY_ENV}=… make course), or through Colab secrets."
                )


class Secret:
    """An API key that never shows itself: its repr/str are masked, so printing settings is safe."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source

    def get(self) -> str:
        """The key itself, for handing to the SDK; never print it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret(****, {len(self._value)} chars, from {self.source})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self):  # refuse to be pickled into a file by accident
        raise TypeError("Secret refuses to be pickled: an API key must not be written to disk")


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
    twin_target: str | None = None  # on a GPU twin: the model that GPU would hold (local_model computes in its place)

    @property
    def gpu_model(self) -> str:
        """The model the GPU holds: on a twin the one a real GPU would load (e.g. Mistral-7B), else local_model."""
        return self.twin_target or self.local_model

    @property
    def torch_device(self) -> str:
        """The device torch computes on: `cpu` on a twin, else `device` (for `SentenceTransformer(device=...)` etc.)."""
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
            *([("GPU model (twin)", self.gpu_model, "what the twin's GPU holds; the GPU ledger counts it")]
              if self.twin_target else []),
            ("LOCAL_URL", self.local_url or "(course endpoint on loopback)", self.sources.get("LOCAL_URL", "")),
        ]
        return rows

    def describe(self) -> str:
        """One paragraph saying which backend runs and why."""
        return f"Backend: {self.backend} — {self.reason}"

    @property
    def answered_by(self) -> str:
        """Who answers this run's chat calls, for labels and `record(source=...)`: e.g. 'La Plateforme'."""
        if self.backend == "mistral":
            return "La Plateforme"
        if self.local_url:
            return f"external server at {self.local_url}"
        profile = twin_profile(self.device)
        if profile is not None:
            return (f"{model_label(self.local_model)} on the course endpoint (CPU, in place of {self.gpu_model} on a "
                    f"{profile.name} twin)")
        return f"{model_label(self.local_model)} on the course endpoint ({self.device.upper()})"

    def show(self):
        """Print which backend answers and why (with what that model's answers mean); return the knob table."""
        print(self.describe())
        if self.backend == "local" and not self.local_url:
            note = model_note(self.local_model)
            if note:
                print("Answers come from " + note)
        import pandas as pd

        return pd.DataFrame(self.table(), columns=["knob", "value", "from"]).set_index("knob")


# ---------------------------------------------------------------- key discovery
_colab_cache: dict[str, str | None] = {}


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules or bool(os.environ.get("COLAB_RELEASE_TAG"))


def unattended() -> bool:
    """True under CI, papermill runs of the course, or pytest: never ask a question there."""
    return any(os.environ.get(v) for v in ("CI", "COURSE_UNATTENDED", "PYTEST_CURRENT_TEST"))


def _colab_secret(name: str) -> str | None:
    if name in _colab_cache:
        return _colab_cache[name]
    value = None
    if in_colab():
        try:
            from google.colab import userdata  # type: ignore[import-not-found]

            value = userdata.get(name) or None
        except Exception:  # secret missing or notebook access not granted
            value = None
    _colab_cache[name] = value
    return value


def _ask_human(prompt: str) -> str | None:
    if unattended():
        return None
    try:
        import getpass

        value = getpass.getpass(prompt)
    except Exception:  # no stdin (papermill/nbval kernels raise StdinNotImplementedError)
        return None
    return value.strip() or None


def _clean_key(value: str | None) -> str | None:
    """Strip whitespace and the quotes people paste along with a key; empty → None."""
    if value is None:
        return None
    text = value.strip().strip("'\"").strip()
    if any(ch.isspace() for ch in text):
        raise SettingsError("The Mistral API key contains spaces or line breaks: copy it again from the console.")
    return text or None


def find_api_key(explicit: str | None = None, *, ask: bool = False) -> Secret | None:
    """Find the Mistral API key: argument, then $MISTRAL_API_KEY, then Colab secrets, then (if asked) a prompt."""
    for value, source in ((explicit, "argument"), (os.environ.get(KEY_ENV), f"${KEY_ENV}")):
        key = _clean_key(value)
        if key:
            return Secret(key, source)
    colab = _clean_key(_colab_secret(KEY_ENV))
    if colab:
        return Secret(colab, "Colab secrets")
    if ask:
        typed = _clean_key(_ask_human("Mistral API key (input hidden): "))
        if typed:
            return Secret(typed, "typed at the prompt")
    return None


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


def check_url(url: str) -> str:
    """An http(s) URL with a host, without a trailing slash; a clear error otherwise (e.g. a missing scheme)."""
    from urllib.parse import urlsplit

    text = url.strip().strip("'\"").rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            f"LOCAL_URL={url!r} is not an http(s) URL. Write it in full, e.g. 'http://127.0.0.1:8000' "
            "(for vLLM: the address `vllm serve` prints)."
        )
    if parts.username or parts.password:
        raise SettingsError(
            "LOCAL_URL must not contain a user name or password (it is shown in outputs). "
            f"Put the server's token in ${LOCAL_KEY_ENV} instead."
        )
    return text


def resolve_device(device: str = "auto") -> str:
    """The torch device to compute on: `auto` → `cuda` when a GPU is present, else `cpu`; a twin computes on `cpu`."""
    device = (device or "auto").strip().lower()
    if device.startswith(TWIN_PREFIX):
        check_device(device)
        return "cpu"
    if device not in DEVICES:
        raise SettingsError(f"DEVICE={device!r} is not one of {', '.join(DEVICES)}, or a GPU twin "
                            f"({', '.join(TWIN_PREFIX + k for k in PROFILES)}). Use 'auto' unless you know better.")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise SettingsError(
            "DEVICE='cuda' but torch sees no CUDA GPU. In Colab: Runtime → Change runtime type → T4 GPU; "
            "otherwise use DEVICE='auto' or 'cpu' (or DEVICE='twin:t4' to decide as on a T4 while computing on the CPU)."
        )
    return device


def check_device(device: str) -> str:
    """The DEVICE as the course keeps it: `cuda` / `cpu` / `mps`, or `twin:<gpu>` (checked), with `auto` resolved."""
    text = (device or "auto").strip().lower()
    if text.startswith(TWIN_PREFIX):
        try:
            twin_profile(text)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        return text
    return resolve_device(text)


def hf_token_available() -> bool:
    """True when a Hugging Face token is configured ($HF_TOKEN, `hf auth login`, or Colab's HF_TOKEN secret)."""
    if os.environ.get("HF_TOKEN"):
        return True
    try:
        from huggingface_hub import get_token

        return bool(get_token())
    except Exception:
        return False


def resolve_local_model(local_model: str, device: str, *, token: bool | None = None) -> tuple[str, str]:
    """`auto` → the real (gated) Mistral-7B on a CUDA GPU with a Hugging Face token, else SmolLM2-135M; (model, why).

    `token=True` decides as if a token were set (a GPU twin decides as on that GPU with one).
    """
    if local_model.lower() != "auto":
        return local_model, "as asked"
    tiny = "SmolLM2-135M-Instruct, a real but tiny model (not Mistral): right about simple facts, often wrong beyond"
    if device != "cuda":
        return SMOLLM, f"no CUDA GPU, so {tiny}"
    if not (hf_token_available() if token is None else token):
        return SMOLLM, (
            f"a CUDA GPU is present but no Hugging Face token, and {DEFAULT_HUB_MODEL} is gated: "
            f"accept its licence on the hub and set HF_TOKEN (or a Colab secret) to load it; until then {tiny}"
        )
    return DEFAULT_HUB_MODEL, ("a CUDA GPU and a Hugging Face token are present" if token is None else
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
) -> Settings:
    """Resolve every knob (parameter > env > default) and pick the backend, saying which and why."""
    refuse_injected_secrets()
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
    twin_target = None
    if device.startswith(TWIN_PREFIX):  # decide as on that GPU with a token; SmolLM2 computes in the target's place
        twin_target, local_why = resolve_local_model(values["LOCAL_MODEL"] or "auto", "cuda", token=True)
        local_model = twin_target if twin_target in (SMOLLM, STANDIN) else SMOLLM
        local_why = f"{local_why}; on the {device} twin, {model_label(local_model)} computes in its place on the CPU"
        twin_target = None if twin_target == local_model else twin_target
    else:
        local_model, local_why = resolve_local_model(values["LOCAL_MODEL"] or "auto", device)
    if (values["LOCAL_MODEL"] or "auto").lower() == "auto":
        sources["LOCAL_MODEL"] += f" (auto → {twin_target or local_model}: {local_why})"

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
            f"({local_why}). Set {KEY_ENV} or BACKEND='mistral' to use La Plateforme."
        )
    if values["LOCAL_URL"]:
        values["LOCAL_URL"] = check_url(values["LOCAL_URL"])
        if backend == "local":
            reason += f"; external server at {values['LOCAL_URL']}"
    local_token = os.environ.get(LOCAL_KEY_ENV, "").strip()

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
        twin_target=twin_target,
    )
    log.info("resolved settings: backend=%s (%s)", backend, reason)
    if announce:
        print(settings.describe())
    return settings
