"""00_setup under papermill with non-default parameters records what it resolved."""

from __future__ import annotations

import pytest


@pytest.mark.notebook
def test_00_with_explicit_local_backend_and_model(notebook_runner):
    # the stand-in, not a config: model: 00 now proves the backend answers, so it serves what LOCAL_MODEL names
    metrics = notebook_runner("00_setup", BACKEND="local", LOCAL_MODEL="standin", DEVICE="cpu")
    assert metrics["backend"] == "local"
    assert metrics["device"] == "cpu"
    assert metrics["local_model"] == "standin" and metrics["backend_answers"] is True
    # conftest plants a fake MISTRAL_API_KEY in every notebook kernel: it is found, and BACKEND=local still wins
    assert metrics["key_found"] is True
    assert metrics["torch_version"].startswith("2.")
