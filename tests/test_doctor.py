"""The setup check: versions, GPU report, and a fix for each problem found."""

from __future__ import annotations

import pytest

from helpers import doctor, settings

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
    probs = doctor.problems(cfg, ALL_PRESENT, {"device": "cuda", "name": "NVIDIA A100", "bf16": True})
    assert len(probs) == 1 and "gated" in probs[0].what and "HF_TOKEN" in probs[0].fix


def test_t4_has_no_bf16_note(monkeypatch):
    monkeypatch.setattr(doctor, "hf_token_available", lambda: True)
    cfg = _cfg(monkeypatch, "k" * 32)
    probs = doctor.problems(cfg, ALL_PRESENT, {"device": "cuda", "name": "Tesla T4", "bf16": False})
    assert [p.what for p in probs] == ["Tesla T4 has no bf16"]


def test_report_never_contains_the_key(monkeypatch):
    secret = "abcdefghijklmnopqrstuvwxyz012345"
    report = doctor.report(_cfg(monkeypatch, secret))
    assert report["key_found"] is True and secret not in repr(report)


def test_version_check_reads_pre_releases_and_local_builds():
    assert doctor._at_least("3.7.0rc1", (3, 0))
    assert doctor._at_least("2.13.0+cpu", (2, 4))
    assert not doctor._at_least("0.4.2", (3, 0))
