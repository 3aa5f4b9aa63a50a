"""Notebooks 06–08 run end to end with non-default parameters (papermill) and record what they measured."""

from __future__ import annotations

import pytest
from conftest import EXPECTED_FIGURES

pytestmark = pytest.mark.notebook


def test_06_fp16_on_cpu(notebook_runner, figures_drawn):
    m = notebook_runner("06_selfhost_fp16", LOCAL_MODEL="standin", DEVICE="cpu", PRECISION="fp16", MAX_NEW_TOKENS=8)
    assert figures_drawn("06_selfhost_fp16") == EXPECTED_FIGURES["06_selfhost_fp16"]
    assert m["device"] == "cpu" and m["dtype"] == "fp16"
    assert m["footprint_bytes"] > 0 and abs(m["estimated_bytes"] - m["footprint_bytes"]) / m["footprint_bytes"] < 0.01
    assert m["tokens_per_s"] > 0
    assert 14.4 <= m["mistral7b_fp16_estimated_gb"] <= 14.6
    assert "CPU" in m["measured_on"] and "stand-in" in m["measured_on"]


# 07 (nf4 only) and 08 (K=5, BM25, short JSON answers) run under the T4 twin instead: tests/test_nb_twin.py asserts
# what the CPU variants did, and the GPU ledger besides
