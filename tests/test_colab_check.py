"""scripts/colab_check.py's pure parts: Colab's freeze → constraints, the substitutions, the setup cell's /content.

The check itself (`make colab-check`) builds a venv and runs four notebooks; `make test` does not run it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import colab_check  # noqa: E402

FREEZE = """# Do not modify this file directly
accelerate==1.14.0
google-colab @ file:///colabtools/dist/google_colab-1.0.0.tar.gz
jupyter_kernel_gateway @ git+https://github.com/googlecolab/kernel_gateway@b134e99
torch @ https://download.pytorch.org/whl/cpu/torch-2.11.0%2Bcpu-cp313-cp313-manylinux_2_28_x86_64.whl
Jinja2==3.1.6
setuptools==75.2.0
torchvision==0.26.0+cu128
"""


def test_parse_freeze_keeps_registry_versions_and_wheel_urls_only():
    pins = colab_check.parse_freeze(FREEZE)
    assert pins == {"accelerate": "1.14.0", "torch": "2.11.0+cpu", "jinja2": "3.1.6", "setuptools": "75.2.0",
                    "torchvision": "0.26.0+cu128"}  # the sdist and the git commit have no registry version


def test_local_builds_are_substituted_and_said():
    pins, notes = colab_check.substitute(colab_check.parse_freeze(FREEZE), "2.13.0+cpu",
                                         ["setuptools>=77.0.3", "jinja2", 'triton==3.6.0; platform_system == "Linux"'])
    assert pins["torch"] == "2.13.0+cpu" and "torchvision" not in pins
    assert "setuptools" not in pins  # the substitute needs a newer one than Colab's: the pin is lifted
    assert pins["jinja2"] == "3.1.6" and pins["accelerate"] == "1.14.0"  # everything else stays at Colab's version
    assert notes == ["torch 2.11.0+cpu → 2.13.0+cpu (CPU build; Colab's is not on PyPI, PyPI's pulls CUDA)",
                     "torchvision 0.26.0+cu128 left out (a local build, not on PyPI; the course does not use it)",
                     "setuptools 75.2.0 → >=77.0.3 (torch 2.13.0+cpu requires it)"]


def test_cpu_torch_pin_comes_from_constraints_cpu():
    assert colab_check.cpu_torch_pin("# c\ntorch==2.13.0\n") == "2.13.0+cpu"
    assert colab_check.cpu_torch_pin("torch==2.13.0+cpu  # local\n") == "2.13.0+cpu"
    with pytest.raises(ValueError, match="constraints-cpu.txt pins no torch"):
        colab_check.cpu_torch_pin("numpy==2\n")
    assert colab_check.cpu_torch_pin((ROOT / "constraints-cpu.txt").read_text()).endswith("+cpu")


def test_preinstalled_is_what_colab_has_of_the_install():
    pins = {"transformers": "5.15.0", "sentencepiece": "0.2.2", "ipykernel": "6.17.1", "jax": "0.7.2"}
    closure = ["transformers", "mistralai", "mistral_common", "sentencepiece", "ipykernel"]  # as pip's report names them
    wanted = colab_check.preinstalled(closure, pins)
    assert wanted == ["ipykernel==6.17.1", "sentencepiece==0.2.2", "transformers==5.15.0"]  # Colab's; not jax


def test_the_kept_freeze_is_dated_and_is_colabs_gpu_runtime():
    path = colab_check.freeze_file()
    header = path.read_text().splitlines()[0]
    assert "googlecolab/backend-info" in header and "a72407924822ea377410b69f0a290150bcb5c9c2" in header
    assert "2026-08-19" in header and path.name == "pip-freeze.gpu-a724079.txt"
    pins = colab_check.parse_freeze(path.read_text())
    assert pins["torch"] == "2.11.0+cu128" and pins["ipywidgets"] == "7.7.1" and pins["pip"] == "24.1.2"
    from test_packaging import COLAB_PREINSTALLED  # the pins test_packaging checks against are this file's

    for name, version in COLAB_PREINSTALLED.items():  # "1.27" there stands for huggingface-hub 1.27.0 here
        assert pins[name].split("+")[0] == version or pins[name].startswith(version + "."), (name, pins[name])


def test_the_setup_cell_runs_as_written_but_for_content(tmp_path):
    source = sorted((ROOT / "notebooks").glob("00_*.ipynb"))[0]
    colab_check.colab_notebook(source, tmp_path / source.name, tmp_path / "runtime")  # not ".../content": see below
    before, after = (json.loads(p.read_text())["cells"] for p in (source, tmp_path / source.name))
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if "".join(a["source"]) != "".join(b["source"])]
    assert len(changed) == 1 and colab_check.SETUP_MARK in "".join(after[changed[0]]["source"])
    text = "".join(after[changed[0]]["source"])
    assert "/content" not in text and f"!cd {tmp_path}/runtime && (" in text  # the shell line fetches there
    assert f'runpy.run_path("{tmp_path}/runtime/course/helpers/course/colab.py", ' in text  # and runs colab.py there
    assert "".join(before[changed[0]]["source"]).replace("/content", f"{tmp_path}/runtime") == text


def test_a_setup_cell_that_no_longer_runs_colab_py_stops_the_check(tmp_path):
    nb = json.loads(sorted((ROOT / "notebooks").glob("00_*.ipynb"))[0].read_text())
    cell = next(c for c in nb["cells"] if colab_check.SETUP_MARK in "".join(c["source"]))
    cell["source"] = 'import sys\nif "google.colab" in sys.modules:\n    %pip install -e /content/course\n'
    (tmp_path / "00_setup.ipynb").write_text(json.dumps(nb))
    with pytest.raises(SystemExit, match="no longer runs /content/course/helpers/course/colab.py"):
        colab_check.colab_notebook(tmp_path / "00_setup.ipynb", tmp_path / "out.ipynb", tmp_path / "content")


def test_the_kernels_git_cannot_reach_github(tmp_path):
    """The check's kernels clone nothing: git reads https://github.com/ as a missing folder and fails at once."""
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1",
           **colab_check.no_github(tmp_path / "nowhere")}
    run = subprocess.run(["git", "clone", "-q", "--depth", "1", "https://github.com/o/n", str(tmp_path / "c")],
                         env=env, capture_output=True, text=True, timeout=30)
    assert run.returncode != 0 and f"{tmp_path}/nowhere/o/n" in run.stderr and not (tmp_path / "c").exists()


def test_a_used_venv_is_put_back_as_built():
    built = {"httpx2": "2.10.0", "ipywidgets": "7.7.1", "pip": "24.1.2"}
    have = {"httpx2": "2.17.0", "ipywidgets": "7.7.1", "pip": "24.1.2", "mistralai": "3.7.0", "mistral-two-paths": "0.1.0"}
    assert colab_check.reset_plan(built, have) == (["mistral-two-paths", "mistralai"], ["httpx2==2.10.0"])
    assert colab_check.reset_plan(built, dict(built)) == ([], [])
