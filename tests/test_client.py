"""The SDK client for either backend: the same Mistral class, retries on, key never exposed."""

from __future__ import annotations

import pytest
from mistralai.client import Mistral

from helpers import client, settings

FAKE_KEY = "fake-key-for-tests-0123456789"


@pytest.fixture(autouse=True)
def _clean(clean_settings_env):
    pass


def test_retry_config_covers_rate_limits_and_server_errors():
    cfg = client.retry_config()
    assert cfg.strategy == "backoff"
    assert {"429", "500", "502", "503", "504"} <= set(cfg.status_codes_override)
    assert cfg.backoff.initial_interval > 0 and cfg.backoff.max_elapsed_time >= cfg.backoff.max_interval


def test_mistral_backend_client(monkeypatch):
    monkeypatch.setenv("MISTRAL_API_KEY", FAKE_KEY)
    c = client.get_client(settings.resolve())
    assert isinstance(c, Mistral)
    assert c.sdk_configuration.get_server_details()[0].startswith("https://api.mistral.ai")
    # the key is handed over as a callable, so it sits in no attribute or repr of the client
    assert FAKE_KEY not in repr(c.sdk_configuration)
    assert FAKE_KEY not in repr(vars(c))
    assert c.sdk_configuration.security().api_key == FAKE_KEY  # ...yet the SDK still sends it


def test_local_backend_with_external_url_points_the_same_client_there():
    cfg = settings.resolve(BACKEND="local", LOCAL_URL="http://127.0.0.1:9/")
    c = client.get_client(cfg)
    assert isinstance(c, Mistral)
    assert c.sdk_configuration.get_server_details()[0] == "http://127.0.0.1:9"


def test_mistral_backend_without_key_is_clear():
    with pytest.raises(settings.SettingsError, match="MISTRAL_API_KEY"):
        client.get_client(BACKEND="mistral")


def test_unknown_local_model_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from helpers.selfhost import ModelLoadError

    with pytest.raises(ModelLoadError) as info:
        client.get_client(BACKEND="local", LOCAL_MODEL="nobody/no-such-model-xyz")
    message = str(info.value)
    assert "nobody/no-such-model-xyz" in message
    assert "smollm2-135m" in message  # says what to do offline
    assert "Traceback" not in message


def test_external_server_token_is_sent_as_bearer(monkeypatch):
    monkeypatch.setenv("COURSE_LOCAL_API_KEY", "vllm-token-123456789")
    c = client.get_client(BACKEND="local", LOCAL_URL="http://127.0.0.1:9")
    assert c.sdk_configuration.security().api_key == "vllm-token-123456789"
    assert "vllm-token-123456789" not in repr(c.sdk_configuration)
