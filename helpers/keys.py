"""Where the keys come from: the Mistral API key (argument, $MISTRAL_API_KEY, Colab secrets, a hidden prompt) and the
Hugging Face token — found when they arrive, never printed (00, 01 and every notebook through `settings.resolve`).

A key added to Colab's secrets after a first run is found on the next run of the cell that reads it: only keys
that were found are remembered. (A key passed as a papermill parameter is refused: `settings.resolve` asks `hooks.guard_parameters`.)
"""

from __future__ import annotations

import os
import sys

KEY_ENV = "MISTRAL_API_KEY"


class SettingsError(ValueError):
    """A knob has a value the course cannot use; the message says which and what to do."""


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


_colab_cache: dict[str, str] = {}  # secrets found; a miss is asked again, so a secret added later is found


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules or bool(os.environ.get("COLAB_RELEASE_TAG"))


def unattended() -> bool:
    """True under CI, papermill runs of the course, or pytest: never ask a question there."""
    return any(os.environ.get(v) for v in ("CI", "COURSE_UNATTENDED", "PYTEST_CURRENT_TEST"))


def _colab_secret(name: str) -> str | None:
    """A Colab secret's value, read once when found; a missing one is looked up again on the next call."""
    if name in _colab_cache:
        return _colab_cache[name]
    value = None
    if in_colab():
        try:
            from google.colab import userdata  # type: ignore[import-not-found]

            value = userdata.get(name) or None
        except Exception:  # secret missing or notebook access not granted
            value = None
    if value:
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


def hf_token_available() -> bool:
    """True when a Hugging Face token is configured ($HF_TOKEN, `hf auth login`, or Colab's HF_TOKEN secret).

    A Colab secret added since the last look is found and put in $HF_TOKEN, so `from_pretrained` sees it too
    (huggingface_hub reads Colab's secret once per runtime and would miss it until a restart).
    """
    if os.environ.get("HF_TOKEN"):
        return True
    colab = _colab_secret("HF_TOKEN")
    if colab:
        os.environ["HF_TOKEN"] = colab.strip()
        return True
    try:
        from huggingface_hub import get_token

        return bool(get_token())
    except Exception:
        return False
