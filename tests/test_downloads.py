"""helpers.course.downloads: what a self-hosting notebook downloads on Colab, sized from the shipped configs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import memory
from helpers.course import downloads
from helpers.settings import DEFAULT_HUB_MODEL, MISTRAL_7B, SMOLLM

ROOT = Path(__file__).resolve().parents[1]


def test_sizes_come_from_the_shipped_configs():
    for hub_id, config in (("mistralai/Mistral-7B-Instruct-v0.3", "mistral-7b-instruct-v0.3"),
                           ("mistralai/Ministral-3-3B-Instruct-2512-BF16", "ministral-3-3b-instruct-2512")):
        assert downloads.download_bytes(hub_id) == memory.count_parameters(config).total * 2 + \
            memory.count_parameters(config).buffer_bytes
    assert 14e9 < downloads.download_bytes(MISTRAL_7B) < 15e9  # 7.25 billion parameters × 2 bytes
    with pytest.raises(ValueError, match="ships configs for"):
        downloads.download_bytes("someone/unknown-model")


def test_the_plan_predicts_time_from_each_cited_speed():
    size = downloads.download_bytes(MISTRAL_7B)
    text = downloads.colab_plan("06")
    assert f"{size / 1e9:.1f} GB" in text and MISTRAL_7B in text
    for speed in downloads.COLAB_SPEEDS:
        assert re.search(r"huggingface_hub#\d+, 20\d\d-\d\d-\d\d", speed.source)  # cited and dated
        assert f"{speed.bytes_per_s / 1e6:.1f} MB/s" in text
    assert "4 min at 55.6 MB/s" in text  # 14.5 GB at 10 GB per 3 minutes
    assert "This run" not in text  # no run named, nothing said about one


def test_the_plan_says_what_this_run_does(monkeypatch):
    short = downloads.colab_plan("07", SMOLLM)  # a packaged model: one line, the Colab download in brackets
    assert short.startswith("This run loads smollm2-135m: nothing is downloaded.") and "\n" not in short
    assert f"{MISTRAL_7B}, 14.5 GB: about 4 min at Colab's usual 55.6 MB/s" in short
    monkeypatch.setattr(downloads, "in_cache", lambda hub_id: True)
    assert "in this runtime's cache already" in downloads.colab_plan("08", DEFAULT_HUB_MODEL)
    monkeypatch.setattr(downloads, "in_cache", lambda hub_id: False)
    assert "the first load downloads it" in downloads.colab_plan("09", DEFAULT_HUB_MODEL)
    other = downloads.colab_plan("10", MISTRAL_7B)  # LOCAL_MODEL set to another model the course sizes
    assert f"loads {MISTRAL_7B} instead (14.5 GB): not in this runtime's cache yet" in other
    assert "size not estimated" in downloads.colab_plan("08", "someone/other-model")
    assert "nothing is downloaded" in downloads.colab_plan("08", str(ROOT))  # a local folder


def test_in_cache_reads_the_hugging_face_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert not downloads.in_cache(DEFAULT_HUB_MODEL)
    snap = tmp_path / "models--mistralai--Ministral-3-3B-Instruct-2512-BF16"
    (snap / "refs").mkdir(parents=True)
    (snap / "refs" / "main").write_text("abc")
    (snap / "snapshots" / "abc").mkdir(parents=True)
    (snap / "snapshots" / "abc" / "model.safetensors.index.json").write_text("{}")
    assert downloads.in_cache(DEFAULT_HUB_MODEL)


def test_the_readme_table_is_current():
    assert downloads.readme_table() in (ROOT / "README.md").read_text(), \
        "run: python -m helpers.course.downloads, and paste its table into the README's Colab section"
