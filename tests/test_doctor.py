"""The setup check: versions, GPU report, and a fix for each problem found."""

from __future__ import annotations

import pytest

from helpers import settings
from helpers.course import doctor

ALL_PRESENT = {"python": "3.11.7", "mistralai": "3.7.0", "transformers": "5.24.0", "torch": "2.13.0"}


def _cfg(monkeypatch, key: str | None):
    monkeypatch.setattr(settings, "in_colab", lambda: False)
    monkeypatch.delenv("COURSE_BACKEND", raising=False)
    if key:
        monkeypatch.setenv("MISTRAL_API_KEY", key)
    else:
        monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    return settings.resolve()


def test_versions_lists_the_course_packages():
    found = doctor.versions()
    assert found["mistralai"].startswith("3.") and found["transformers"].startswith("5.")
    assert set(doctor.PACKAGES) <= set(found)


@pytest.mark.skipif(settings.cuda_available(), reason="this machine has a CUDA GPU")
def test_gpu_report_on_cpu():
    info = doctor.gpu()
    assert info["device"] == "cpu" and "CPU only" in info["name"]


def test_problems_each_come_with_a_fix(monkeypatch):
    cfg = _cfg(monkeypatch, None)
    found = dict(doctor.versions(), mistralai="0.4.2", faiss_cpu=None)
    found["bitsandbytes"] = None
    probs = doctor.problems(cfg, found, {"device": "cpu", "name": "CPU only"})
    whats = " | ".join(p.what for p in probs)
    assert "mistralai 0.4.2 is older than 3.0" in whats
    assert "bitsandbytes is not installed" in whats
    assert "No MISTRAL_API_KEY" in whats and "No CUDA GPU" in whats
    assert all(p.fix for p in probs)


def test_gpu_without_hf_token_is_flagged(monkeypatch):
    cfg = _cfg(monkeypatch, "k" * 32)
    monkeypatch.setattr(doctor, "hf_token_available", lambda: False)
    probs = doctor.problems(cfg, ALL_PRESENT, {"device": "cuda", "name": "NVIDIA A100", "bf16_native": True})
    assert len(probs) == 1 and "gated" in probs[0].what and "HF_TOKEN" in probs[0].fix


def test_simulated_t4_reports_no_native_bf16_and_the_course_chooses_fp16(monkeypatch, fake_t4):
    import torch

    assert torch.cuda.is_bf16_supported() is True  # the trap: torch counts the T4's emulated bf16
    info = doctor.gpu()
    assert info["name"] == "Tesla T4" and info["compute_capability"] == "7.5"
    assert info["bf16_native"] is False and info["course_precision"] == "fp16"
    monkeypatch.setattr(doctor, "hf_token_available", lambda: True)
    probs = doctor.problems(_cfg(monkeypatch, "k" * 32), ALL_PRESENT, info)
    assert [p.what for p in probs] == ["Tesla T4 has no native bf16 (compute capability 7.5, bf16 needs 8.0+)"]
    assert "fp16" in probs[0].fix


def test_simulated_a100_has_native_bf16_and_no_bf16_note(monkeypatch, fake_a100):
    info = doctor.gpu()
    assert info["bf16_native"] is True and info["compute_capability"] == "8.0"
    monkeypatch.setattr(doctor, "hf_token_available", lambda: True)
    assert doctor.problems(_cfg(monkeypatch, "k" * 32), ALL_PRESENT, info) == []


def test_dev_tools_are_reported_but_never_a_problem(monkeypatch):
    """In Colab papermill & co. are absent, and nothing the attendee can do should be asked of them."""
    assert "papermill" in doctor.DEV_PACKAGES and "papermill" not in doctor.PACKAGES
    assert set(doctor.dev_versions()) == set(doctor.DEV_PACKAGES)
    cfg = _cfg(monkeypatch, "k" * 32)
    monkeypatch.setattr(doctor, "hf_token_available", lambda: True)
    found = dict(ALL_PRESENT, papermill=None, nbval=None, pytest=None)
    gpu = {"device": "cuda", "name": "NVIDIA A100", "bf16_native": True}
    assert doctor.problems(cfg, found, gpu) == []


def test_report_never_contains_the_key(monkeypatch):
    secret = "abcdefghijklmnopqrstuvwxyz012345"
    report = doctor.report(_cfg(monkeypatch, secret))
    assert report["key_found"] is True and secret not in repr(report)


def test_version_check_reads_pre_releases_and_local_builds():
    assert doctor._at_least("3.7.0rc1", (3, 0))
    assert doctor._at_least("2.13.0+cpu", (2, 4))
    assert not doctor._at_least("0.4.2", (3, 0))
