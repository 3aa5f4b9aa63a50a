"""Settings resolution: parameter > env > default, backend choice, and the key never showing itself."""

from __future__ import annotations

import logging
import os
import pickle

import pytest

from helpers import keys, settings
from helpers.settings import Secret, SettingsError, resolve

FAKE_KEY = "sk-test-0123456789abcdefFAKE"


@pytest.fixture(autouse=True)
def _clean(clean_settings_env):
    pass


def test_default_when_nothing_set():
    cfg = resolve()
    assert cfg.chat_model == "mistral-small-latest"
    assert cfg.sources["CHAT_MODEL"] == "default"
    assert cfg.requested_backend == "auto"


def test_env_beats_default(monkeypatch):
    monkeypatch.setenv("COURSE_CHAT_MODEL", "mistral-large-latest")
    cfg = resolve()
    assert cfg.chat_model == "mistral-large-latest"
    assert cfg.sources["CHAT_MODEL"] == "$COURSE_CHAT_MODEL"


def test_parameter_beats_env(monkeypatch):
    monkeypatch.setenv("COURSE_CHAT_MODEL", "mistral-large-latest")
    cfg = resolve(CHAT_MODEL="mistral-medium-latest")
    assert cfg.chat_model == "mistral-medium-latest"
    assert cfg.sources["CHAT_MODEL"] == "parameter"


def test_empty_parameter_falls_back_to_env(monkeypatch):
    monkeypatch.setenv("COURSE_EMBED_MODEL", "my-embed")
    assert resolve(EMBED_MODEL="").embed_model == "my-embed"


def test_auto_without_key_is_local():
    cfg = resolve(BACKEND="auto")
    assert cfg.backend == "local"
    assert "no API key" in cfg.reason
    assert cfg.api_key is None


def test_auto_with_env_key_is_mistral(monkeypatch):
    monkeypatch.setenv("MISTRAL_API_KEY", FAKE_KEY)
    cfg = resolve()
    assert cfg.backend == "mistral"
    assert "$MISTRAL_API_KEY" in cfg.reason
    assert cfg.api_key.get() == FAKE_KEY


def test_colab_secret_is_used_when_env_has_none(monkeypatch):
    calls = []

    def fake_secret(name):
        calls.append(name)
        keys._colab_cache[name] = FAKE_KEY
        return FAKE_KEY

    monkeypatch.setattr(keys, "_colab_secret", fake_secret)
    cfg = resolve()
    assert cfg.backend == "mistral" and cfg.api_key.source == "Colab secrets"


def _fake_colab(monkeypatch, secrets: dict[str, str]) -> list[str]:
    """Make `google.colab.userdata` answer from `secrets` (a missing name raises, as Colab's does); return the reads."""
    import sys
    import types

    monkeypatch.setattr(keys, "in_colab", lambda: True)
    reads: list[str] = []

    class FakeUserdata:
        @staticmethod
        def get(name):
            reads.append(name)
            if name not in secrets:
                raise KeyError(name)  # Colab's SecretNotFoundError
            return secrets[name]

    colab = types.ModuleType("google.colab")
    colab.userdata = FakeUserdata
    google = types.ModuleType("google")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    return reads


def test_colab_secret_cache(monkeypatch):
    reads = _fake_colab(monkeypatch, {"MISTRAL_API_KEY": FAKE_KEY})
    assert keys._colab_secret("MISTRAL_API_KEY") == FAKE_KEY
    assert keys._colab_secret("MISTRAL_API_KEY") == FAKE_KEY
    assert reads == ["MISTRAL_API_KEY"], "a secret that was found is read once"


def test_a_colab_secret_added_after_a_first_run_is_found_without_a_restart(monkeypatch):
    secrets: dict[str, str] = {}
    _fake_colab(monkeypatch, secrets)
    assert resolve().backend == "local"  # the first run: no key yet
    secrets["MISTRAL_API_KEY"] = FAKE_KEY  # the learner adds the secret, then re-runs the cell
    cfg = resolve()
    assert cfg.backend == "mistral" and cfg.api_key.source == "Colab secrets"


def test_an_hf_token_secret_added_later_is_found_and_handed_to_the_hub(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "")  # recorded, so the token this test sets is removed afterwards
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    secrets: dict[str, str] = {}
    _fake_colab(monkeypatch, secrets)
    assert not keys.hf_token_available()
    secrets["HF_TOKEN"] = "hf_" + "x1" * 10
    assert keys.hf_token_available() and os.environ["HF_TOKEN"] == secrets["HF_TOKEN"]


def test_argument_key_beats_env(monkeypatch):
    monkeypatch.setenv("MISTRAL_API_KEY", "env-key")
    cfg = resolve(MISTRAL_API_KEY=FAKE_KEY)
    assert cfg.api_key.get() == FAKE_KEY and cfg.api_key.source == "argument"


def test_pasted_quotes_and_blank_keys(monkeypatch):
    monkeypatch.setenv("MISTRAL_API_KEY", f"  '{FAKE_KEY}'\n")
    assert resolve().api_key.get() == FAKE_KEY
    monkeypatch.setenv("MISTRAL_API_KEY", "   ")
    assert resolve().backend == "local", "a blank key is no key"
    monkeypatch.setenv("MISTRAL_API_KEY", "abc def")
    with pytest.raises(SettingsError, match="spaces or line breaks"):
        resolve()


def test_local_url_is_checked_and_normalised():
    assert resolve(BACKEND="local", LOCAL_URL="http://10.0.0.5:8000/").local_url == "http://10.0.0.5:8000"
    with pytest.raises(SettingsError, match="not an http\\(s\\) URL.*http://127.0.0.1:8000"):
        resolve(LOCAL_URL="localhost:8000")
    with pytest.raises(SettingsError, match="must not contain a user name or password"):
        resolve(LOCAL_URL="http://me:pw@host:8000")


def test_local_api_key_comes_from_env_and_is_masked(monkeypatch):
    monkeypatch.setenv("COURSE_LOCAL_API_KEY", "vllm-token-123456789")
    cfg = resolve(BACKEND="local", LOCAL_URL="http://127.0.0.1:8000")
    assert cfg.local_api_key.get() == "vllm-token-123456789"
    assert "vllm-token-123456789" not in repr(cfg)


def test_explicit_local_with_key_stays_local(monkeypatch):
    monkeypatch.setenv("MISTRAL_API_KEY", FAKE_KEY)
    assert resolve(BACKEND="local").backend == "local"


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(SettingsError, match="BACKEND='openai' is not one of auto, mistral, local"):
        resolve(BACKEND="openai")


def test_mistral_backend_without_key_is_a_clear_error():
    with pytest.raises(SettingsError, match="no API key was found.*BACKEND='local'"):
        resolve(BACKEND="mistral")


def test_no_prompt_when_unattended(monkeypatch):
    asked = []
    monkeypatch.setattr("getpass.getpass", lambda prompt="": asked.append(prompt) or FAKE_KEY)
    with pytest.raises(SettingsError):
        resolve(BACKEND="mistral")
    assert asked == [], "never prompt under CI / papermill"


def test_prompt_only_for_explicit_mistral_with_a_human(monkeypatch):
    for var in ("CI", "COURSE_UNATTENDED", "PYTEST_CURRENT_TEST"):
        monkeypatch.delenv(var, raising=False)
    asked = []
    monkeypatch.setattr("getpass.getpass", lambda prompt="": asked.append(prompt) or FAKE_KEY)
    assert resolve(BACKEND="auto").backend == "local"
    assert asked == [], "auto never prompts"
    cfg = resolve(BACKEND="mistral")
    assert len(asked) == 1 and cfg.api_key.source == "typed at the prompt"


def test_bad_device_is_a_clear_error():
    with pytest.raises(SettingsError, match="DEVICE='tpu'"):
        resolve(DEVICE="tpu")


def test_cuda_without_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(settings, "cuda_available", lambda: False)
    with pytest.raises(SettingsError, match="no CUDA GPU"):
        resolve(DEVICE="cuda")


def test_local_model_auto_picks_the_tiny_real_model_on_cpu(monkeypatch):
    monkeypatch.setattr(settings, "cuda_available", lambda: False)
    cfg = resolve()
    assert cfg.local_model == "smollm2-135m"
    assert "no CUDA GPU, so SmolLM2-135M-Instruct" in cfg.sources["LOCAL_MODEL"] and "not Mistral" in settings.model_note(cfg.local_model)


def test_local_model_auto_picks_hub_model_on_gpu_with_hf_token(monkeypatch):
    monkeypatch.setattr(settings, "cuda_available", lambda: True)
    monkeypatch.setenv("HF_TOKEN", "hf-test-token")
    cfg = resolve()
    assert cfg.device == "cuda" and cfg.local_model == settings.DEFAULT_HUB_MODEL


def test_local_model_auto_on_gpu_without_hf_token_stays_on_the_tiny_model(monkeypatch):
    monkeypatch.setattr(settings, "cuda_available", lambda: True)
    monkeypatch.setattr(settings, "hf_token_available", lambda: False)
    cfg = resolve()
    assert cfg.local_model == "smollm2-135m"
    assert "gated" in cfg.sources["LOCAL_MODEL"] and "HF_TOKEN" in cfg.sources["LOCAL_MODEL"]


def test_explicit_local_model_is_kept_on_cpu():
    assert resolve(LOCAL_MODEL="mistralai/Mistral-7B-Instruct-v0.1").local_model == "mistralai/Mistral-7B-Instruct-v0.1"


def test_key_never_in_repr_str_or_logs(monkeypatch, caplog):
    monkeypatch.setenv("MISTRAL_API_KEY", FAKE_KEY)
    caplog.set_level(logging.DEBUG)
    cfg = resolve(announce=True)
    texts = [repr(cfg), str(cfg), repr(cfg.api_key), str(cfg.api_key), f"{cfg.api_key}", cfg.describe(),
             str(cfg.table()), caplog.text]
    for text in texts:
        assert FAKE_KEY not in text
        assert FAKE_KEY[:12] not in text
    assert "****" in repr(cfg.api_key)


def test_key_refuses_pickling():
    with pytest.raises(TypeError, match="must not be written"):
        pickle.dumps(Secret(FAKE_KEY, "test"))


def test_data_path_missing_is_clear():
    with pytest.raises(FileNotFoundError, match="full checkout"):
        settings.data_path("no-such-file.csv")


def test_answered_by_and_banner_name_the_model(monkeypatch):
    monkeypatch.setattr(settings, "cuda_available", lambda: False)
    cfg = resolve(BACKEND="local")
    assert cfg.answered_by == "SmolLM2-135M-Instruct on the course endpoint (CPU)"
    assert "not Mistral" in settings.model_note(cfg.local_model)
    assert settings.model_note("mistralai/Mistral-7B-Instruct-v0.3") is None
    assert "random" in settings.model_label("standin")
