"""Shared test fixtures: an isolated course cache, and a papermill runner that returns what a notebook recorded."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"

# Tests never touch the network or a real key (set before huggingface_hub is imported: it reads these once).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["COURSE_UNATTENDED"] = "1"
for _secret in ("MISTRAL_API_KEY", "COURSE_LOCAL_API_KEY", "HF_TOKEN"):
    os.environ.pop(_secret, None)

# Local means local: every notebook kernel (nbval and papermill start them with this environment) runs with a
# fake key planted, BACKEND=local, and a network guard (tests/netguard/sitecustomize.py) that refuses any
# non-loopback lookup or connection and logs it; `pytest_sessionfinish` fails the run if the log is not empty.
# Unit tests get none of this (see `_unit_tests_see_no_planted_key`).
CANARY_KEY = "canary0not0a0real0mistral0key00"
NET_GUARD_DIR = Path(__file__).resolve().parent / "netguard"
# one log per pytest run: with pytest-xdist (`make test` runs two workers) each worker is a child of the controller,
# and all of them write the controller's log, which the controller checks once every worker is done
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
NET_GUARD_LOG = Path(tempfile.gettempdir()) / f"course-net-guard-{os.getppid() if _WORKER else os.getpid()}.log"
if not _WORKER:
    NET_GUARD_LOG.unlink(missing_ok=True)
KERNEL_ENV = {
    "MISTRAL_API_KEY": CANARY_KEY,
    "COURSE_BACKEND": "local",
    "COURSE_NET_GUARD": "1",
    "COURSE_NET_GUARD_LOG": str(NET_GUARD_LOG),
    "PYTHONPATH": os.pathsep.join(p for p in (str(NET_GUARD_DIR), os.environ.get("PYTHONPATH", "")) if p),
}
_ENV_BEFORE = {name: os.environ.get(name) for name in KERNEL_ENV}
os.environ.update(KERNEL_ENV)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_setupnodes(config, specs):
    """pytest-xdist workers start from the environment as it was before this file ran, as a plain pytest process
    does: the guard (a sitecustomize on PYTHONPATH) is for the notebook kernels each worker starts, not for the
    worker itself, whose unit tests check what happens when a client cannot reach api.mistral.ai."""
    for name, value in _ENV_BEFORE.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def _fresh_gpu_ledger():
    """Each test starts with no GPU ledger, as a notebook's kernel does (a faked GPU must not leak into the next test)."""
    from helpers.course import gpu

    gpu.reset_ledger()
    yield
    gpu.reset_ledger()


@pytest.fixture(autouse=True)
def _unit_tests_see_no_planted_key(request, monkeypatch):
    """Only notebook runs see the planted key and BACKEND=local; unit tests resolve settings from a clean slate."""
    if request.node.get_closest_marker("notebook") is None:
        for name in ("MISTRAL_API_KEY", "COURSE_BACKEND", "COURSE_NET_GUARD"):
            monkeypatch.delenv(name, raising=False)


def pytest_sessionfinish(session, exitstatus):
    """Fail the run when any notebook kernel tried to reach the network (even if the notebook caught the error)."""
    if _WORKER:  # the controller checks the shared log after the last worker
        return
    if NET_GUARD_LOG.exists() and NET_GUARD_LOG.read_text().strip():
        print(f"\nnetwork guard: a notebook tried to leave the machine with BACKEND=local:\n{NET_GUARD_LOG.read_text()}")
        session.exitstatus = 1


def run_notebook(name: str, tmp_path: Path, **parameters) -> dict:
    """Execute notebooks/<name>.ipynb (a deep dive: "deep/05a_…") with papermill and these parameters; return the
    metrics it recorded."""
    import papermill as pm

    source = NOTEBOOKS / f"{name}.ipynb"
    name = source.stem
    metrics_file = tmp_path / f"{name}.metrics.json"
    old = os.environ.get("COURSE_METRICS_FILE")
    os.environ["COURSE_METRICS_FILE"] = str(metrics_file)
    try:
        pm.execute_notebook(
            str(source),
            str(tmp_path / f"{name}.out.ipynb"),
            parameters=parameters,
            cwd=str(source.parent),
            kernel_name="python3",
            progress_bar=False,
            execution_timeout=600,
        )
    finally:
        if old is None:
            os.environ.pop("COURSE_METRICS_FILE", None)
        else:
            os.environ["COURSE_METRICS_FILE"] = old
    assert metrics_file.exists(), f"{name} recorded no metrics"
    return json.loads(metrics_file.read_text())


# The figures each notebook draws in a run without a key (08 adds a second, local vs API, with one)
EXPECTED_FIGURES = {"02_prompting_conversations": 1, "03_model_selection": 0, "05a_retrieval_engineering": 2, "06_selfhost_fp16": 1,
                    "07_quantization_int8": 1, "08a_local_rag_measured": 2}


def executed_figures(name: str, tmp_path: Path) -> int:
    """How many image/png outputs the executed copy of notebooks/<name>.ipynb holds."""
    import nbformat

    nb = nbformat.read(tmp_path / f"{name}.out.ipynb", as_version=4)
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


@pytest.fixture
def figures_drawn(tmp_path):
    """Call as figures_drawn("06_selfhost_fp16") after notebook_runner → the PNG figures in its executed copy."""
    return lambda name: executed_figures(name, tmp_path)


@pytest.fixture
def notebook_runner(tmp_path):
    """Call as notebook_runner("06_selfhost_fp16", PRECISION="fp32") → the recorded metrics dict."""
    return lambda name, **params: run_notebook(name, tmp_path, **params)


@pytest.fixture
def clean_settings_env(monkeypatch):
    """No course env vars, no key, no Colab, unattended: settings resolve from parameters and defaults only."""
    from helpers import keys, settings

    for env_name, _, _ in settings.KNOBS.values():
        monkeypatch.delenv(env_name, raising=False)
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    monkeypatch.setattr(keys, "_colab_cache", {})
    monkeypatch.setattr(keys, "in_colab", lambda: False)
    monkeypatch.setenv("COURSE_UNATTENDED", "1")


def _fake_gpu(monkeypatch, name: str, capability: tuple[int, int], total_gib: float):
    """Make torch.cuda report one GPU with these properties (no CUDA needed)."""
    import types

    import torch

    props = types.SimpleNamespace(name=name, major=capability[0], minor=capability[1],
                                  total_memory=int(total_gib * 2**30))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: props)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    # what torch does: emulated bf16 counts as "supported" unless including_emulation=False
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: capability >= (8, 0) or including_emulation)


@pytest.fixture
def fake_t4(monkeypatch):
    """torch.cuda as on a Colab T4: compute capability 7.5, bf16 'supported' only through emulation."""
    _fake_gpu(monkeypatch, "Tesla T4", (7, 5), 14.56)


@pytest.fixture
def fake_a100(monkeypatch):
    """torch.cuda as on an A100: compute capability 8.0, native bf16."""
    _fake_gpu(monkeypatch, "NVIDIA A100-SXM4-40GB", (8, 0), 39.5)


# ---------------------------------------------------------------- the La Plateforme twin (tests/test_nb_platform_*.py)
# The course endpoint with `platform_tier="free"`, one per pytest process (per xdist worker), serving the offline
# model with a bearer key. A notebook run then sees BACKEND='mistral', a fake MISTRAL_API_KEY and COURSE_API_URL
# pointing at it, so every branch that runs only with a key runs here, against the free tier's rules.
TWIN_KEY = "twin0fake0key0for0the0free0tier0"  # not a real key: the twin accepts only this one
TWIN_LABEL = "La Plateforme twin (free tier)"  # how every number from it is labelled


@pytest.fixture(scope="session")
def free_tier_twin():
    """The URL of the free-tier twin (SmolLM2-135M-Instruct and MiniLM on the CPU), started once per process."""
    from helpers.endpoint import LocalServer
    from helpers.labels import SMOLLM

    server = LocalServer(model=SMOLLM, device="cpu", api_key=TWIN_KEY, platform_tier="free")
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
def with_key_runner(free_tier_twin, notebook_runner, monkeypatch):
    """Call as with_key_runner("03_model_selection", MODELS=[...]) → the metrics it recorded against the twin."""

    def run(name: str, **parameters):
        monkeypatch.setenv("MISTRAL_API_KEY", TWIN_KEY)
        monkeypatch.setenv("COURSE_BACKEND", "mistral")
        monkeypatch.setenv("COURSE_API_URL", free_tier_twin)
        return notebook_runner(name, BACKEND="mistral", **parameters)

    return run


def executed_output(tmp_path, name: str) -> str:
    """Everything the executed copy of notebooks/<name>.ipynb printed or displayed, as one text."""
    import nbformat

    nb = nbformat.read(tmp_path / f"{name}.out.ipynb", as_version=4)
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.extend(str(v) for k, v in out.get("data", {}).items() if k.startswith("text/"))
    return "\n".join(parts)
