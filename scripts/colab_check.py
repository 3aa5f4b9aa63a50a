"""Run notebooks 00, 01, 05 and 07 as a Colab attendee would: Colab's package versions, its setup cell as written.

`make colab-check` runs this with the course's own venv (for papermill); it builds .venv-colab for the kernels:

1. Colab's package versions: the GPU runtime's `pip freeze` from googlecolab/backend-info, kept dated in
   data/colab/pip-freeze.gpu-<commit>.txt, becomes a constraints file. What the registry does not have as written is
   substituted and said (`substitute`): Colab's CUDA torch (2.11.0+cu128) by the CPU torch the course pins in
   constraints-cpu.txt, since PyPI's Linux torch is a CUDA build with gigabytes of NVIDIA libraries and the CPU build
   is not on PyPI; torchvision/torchaudio/torchcodec are left out (the course imports none of them); a pin the CPU
   torch requires otherwise is lifted (setuptools). pip itself is Colab's pip. Then every package of the course's
   install (its whole dependency tree, as pip resolves it) and of a kernel that Colab has is installed at Colab's
   version: what a runtime holds before the setup cell runs. The rest the setup cell installs, as on Colab.
2. `google.colab`: the real package is not on PyPI, so a stand-in (scripts/colab_standin, said in its docstring) is
   copied into the venv and imported when each kernel starts, as Colab's kernel does: the notebooks take their
   Colab branch and find no secrets. The interpreter is $COLAB_PYTHON (python3 by default): Colab's is 3.13, but
   no CPU torch for 3.13 is on PyPI or this machine (only cp311 wheels), so the Makefile's python3 (3.11) it is.
3. The setup cell as written (its five lines: the shell line that fetches the course, then
   helpers/course/colab.py through runpy), with one change: every "/content" in it names a folder under runs/colab/
   (a fresh one per run). The course reaches it the way the cell's zip path takes it: a zip of this checkout
   (tracked and untracked, not ignored, files), as GitHub's "Download ZIP" gives, is put there before the first
   notebook; the kernels' git reads https://github.com/ as a folder that does not exist (GIT_CONFIG_* variables), so
   the cell's clone fails at once, with no network, as it does while the repository is not published; the first
   notebook unzips the course and pip-installs it (-e), and the next ones find it there and install it again.
4. The notebooks run with the course runner (helpers.course.runner) in that kernel, offline (HF_HUB_OFFLINE=1,
   an empty HF_HOME and course cache: a fresh runtime with the hub down), without MISTRAL_API_KEY or HF_TOKEN.

Fails (exit 1) when a notebook fails, when a kernel did not take the Colab branch or used helpers from elsewhere
than the unzipped course, or when the setup cell's pip replaced a package a kernel imports at start (ipywidgets …);
what else it replaced, as it would on Colab (a newer httpx2 for mistralai), is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["00", "01", "05", "07"]
KERNEL = "colab-check"
# what a kernel needs from Colab's stack beyond the course's own dependencies (all in Colab's freeze)
KERNEL_PACKAGES = ["ipykernel", "ipython", "ipywidgets", "jupyter-client", "traitlets", "pyzmq", "tornado"]
SETUP_MARK = '"google.colab" in sys.modules'  # as scripts/nbbuild.py recognises the setup cell


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503: case and runs of -_. do not matter)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_freeze(text: str) -> dict[str, str]:
    """`pip freeze` output → {canonical name: version}. A `name @ URL` line keeps the version its wheel file names;
    one without a wheel version (a local sdist, a git commit) is left out: no registry serves it."""
    pins: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith(("-", "#")) else ""
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonical(name)] = version.strip()
        elif " @ " in line:
            name, url = (part.strip() for part in line.split(" @ ", 1))
            wheel = unquote(url.rsplit("/", 1)[-1].split("#", 1)[0])
            if wheel.endswith(".whl"):
                pins[canonical(name)] = wheel.split("-")[1]
    return pins


def substitute(pins: dict[str, str], cpu_torch: str, torch_requires: list[str]) -> tuple[dict[str, str], list[str]]:
    """Colab's pins as this machine can install them, and one line per change. A local build (+cu128, +cpu) is not
    on PyPI: torch becomes `cpu_torch`; the other torch packages are left out (the course installs none). A pin that
    `cpu_torch` requires otherwise (its `torch_requires`, Requires-Dist lines) is lifted to what it requires."""
    from packaging.requirements import Requirement

    out, notes = {}, []
    for name, version in pins.items():
        if "+" not in version:
            out[name] = version
        elif name == "torch":
            out[name] = cpu_torch
            notes.append(f"torch {version} → {cpu_torch} (CPU build; Colab's is not on PyPI, PyPI's pulls CUDA)")
        else:
            notes.append(f"{name} {version} left out (a local build, not on PyPI; the course does not use it)")
    for line in torch_requires:
        req = Requirement(line)
        name = canonical(req.name)
        if req.marker is None and name in out and not req.specifier.contains(out[name], prereleases=True):
            notes.append(f"{name} {out.pop(name)} → {req.specifier} (torch {cpu_torch} requires it)")
    return out, notes


def cpu_torch_pin(text: str) -> str:
    """The CPU torch the course pins (constraints-cpu.txt's `torch==X`), as X+cpu so pip cannot take a CUDA build."""
    for line in text.splitlines():
        if line.strip().startswith("torch=="):
            version = line.split("==", 1)[1].split("#")[0].strip()
            return version if "+" in version else f"{version}+cpu"
    raise ValueError("constraints-cpu.txt pins no torch==X: add the CPU torch the course uses there")


def preinstalled(closure: list[str], pins: dict[str, str]) -> list[str]:
    """`name==version` for each package of the course's install (and a kernel's) that Colab already has: what a
    runtime holds before the setup cell runs, so that cell's pip finds them in place as it would on Colab."""
    return sorted(f"{canonical(n)}=={pins[canonical(n)]}" for n in set(closure) if canonical(n) in pins)


def closure_of(python: Path, requirements: list[str], scratch: Path) -> list[str]:
    """Every distribution pip would install for `requirements` into an empty venv (a --dry-run report; no install)."""
    report = scratch / "closure.json"
    sh(python, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed", "--report", report, *requirements)
    return [item["metadata"]["name"] for item in json.loads(report.read_text())["install"]]


def freeze_file() -> Path:
    found = sorted((ROOT / "data" / "colab").glob("pip-freeze.gpu-*.txt"))
    if len(found) != 1:
        raise SystemExit(f"want one data/colab/pip-freeze.gpu-<commit>.txt, found {[f.name for f in found]}")
    return found[-1]


def sh(*cmd: str | Path) -> str:
    """Run a command, quietly; on failure print the end of what it said and stop."""
    print("$", " ".join(map(str, cmd))[:160] + " …", flush=True)
    run = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    said = "\n".join(line for line in (run.stdout + run.stderr).splitlines() if "is ignored: it is neither" not in line)
    if run.returncode != 0:
        raise SystemExit(f"{said[-3000:]}\nfailed ({run.returncode}): {' '.join(map(str, cmd))[:300]}")
    return run.stdout


def venv_versions(python: Path) -> dict[str, str]:
    code = ("import json, importlib.metadata as m; print(json.dumps({d.metadata['Name']: d.version "
            "for d in m.distributions()}))")
    return {canonical(k): v for k, v in json.loads(sh(python, "-c", code)).items()}


def requires_of(python: Path, requirement: str, scratch: Path) -> list[str]:
    """The Requires-Dist lines of the wheel pip would take for `requirement` (pip's --dry-run report; no install)."""
    report = scratch / "report.json"
    sh(python, "-m", "pip", "install", "--quiet", "--dry-run", "--no-deps", "--ignore-installed",
       "--report", report, requirement)
    (item,) = json.loads(report.read_text())["install"]
    return item["metadata"].get("requires_dist", [])


def build_venv(venv: Path, python: str, freeze: dict[str, str], cpu_torch: str, deps: list[str]):
    """.venv-colab with Colab's versions of what the course and a kernel use, and the google.colab stand-in;
    rebuilt when an input changes. Returns its python, the substitutions made and the `name==version` installed."""
    inputs = [python, cpu_torch, *deps, *(f"{n}=={v}" for n, v in sorted(freeze.items()))]
    standin = ROOT / "scripts" / "colab_standin" / "google" / "colab"
    digest = hashlib.sha256("\n".join(inputs).encode())
    for f in sorted(standin.glob("*.py")):
        digest.update(f.read_bytes())
    stamp, py, record = venv / ".installed", venv / "bin" / "python", venv / "colab-substitutions.json"
    if stamp.exists() and stamp.read_text() == digest.hexdigest():
        saved = json.loads(record.read_text())
        extra, changed = reset_plan(saved["venv"], venv_versions(py))
        if extra:  # what the last run's setup cell installed: a fresh runtime has none of it
            sh(py, "-m", "pip", "uninstall", "--quiet", "--yes", *extra)
        if changed:  # what it replaced, back at the versions the venv was built with
            sh(py, "-m", "pip", "install", "--quiet", "--no-deps", *changed)
        print(f"{venv.name}: up to date; reset to as built ({len(extra)} removed, {len(changed)} restored)", flush=True)
        return py, saved["notes"], saved["installed"]
    shutil.rmtree(venv, ignore_errors=True)
    sh(python, "-m", "venv", venv)
    sh(py, "-m", "pip", "install", "--quiet", f"pip=={freeze['pip']}")
    pins, notes = substitute(freeze, cpu_torch, requires_of(py, f"torch=={cpu_torch}", venv))
    (venv / "colab-constraints.txt").write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
    # a kernel's packages with their dependencies, all at Colab's versions; then Colab's version of each package in the
    # course's dependency tree, as they are (--no-deps): where the course needs a newer one, the setup cell's pip
    # upgrades it, as it does on Colab
    sh(py, "-m", "pip", "install", "--quiet", "-c", venv / "colab-constraints.txt", *KERNEL_PACKAGES)
    wanted = preinstalled(closure_of(py, deps, venv), pins)
    sh(py, "-m", "pip", "install", "--quiet", "--no-deps", *wanted)
    site = Path(sh(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    shutil.copytree(standin, site / "google" / "colab", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    have = venv_versions(py)
    wrong = {n: have.get(n) for n, v in (w.split("==") for w in wanted) if have.get(n) != v}
    if wrong:
        raise SystemExit(f"{venv.name} did not get Colab's versions: {wrong}")
    at_colab = sorted(f"{n}=={v}" for n, v in have.items() if pins.get(n) == v)
    record.write_text(json.dumps({"notes": notes, "installed": at_colab, "pins": pins, "venv": have}, indent=1))
    stamp.write_text(digest.hexdigest())
    return py, notes, at_colab


def reset_plan(built: dict[str, str], have: dict[str, str]) -> tuple[list[str], list[str]]:
    """What puts a used venv back as built: names to uninstall, and `name==version` to reinstall (--no-deps)."""
    extra = sorted(n for n in have if n not in built)
    changed = sorted(f"{n}=={v}" for n, v in built.items() if have.get(n) != v)
    return extra, changed


def course_zip(target: Path) -> None:
    """This checkout as GitHub's Download ZIP gives it (one top folder), from git's list of files that are not ignored."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True, text=True).stdout.split("\0")
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in filter(None, files):
            if (ROOT / name).is_file():
                zf.write(ROOT / name, f"course-main/{name}")


def colab_notebook(source: Path, target: Path, content: Path) -> None:
    """Copy a notebook with every /content of its setup cell pointing at `content`; nothing else changes."""
    nb = json.loads(source.read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code" and SETUP_MARK in "".join(c["source"])]
    if len(cells) != 1:
        raise SystemExit(f"{source.name}: want one Colab setup cell, found {len(cells)}")
    text = "".join(cells[0]["source"])
    if "/content/course/helpers/course/colab.py" not in text:
        raise SystemExit(f"{source.name}: its setup cell no longer runs /content/course/helpers/course/colab.py; "
                         "update scripts/colab_check.py")
    cells[0]["source"] = text.replace("/content", str(content))
    target.write_text(json.dumps(nb, indent=1))


def no_github(nowhere: Path) -> dict[str, str]:
    """Environment variables under which git reads https://github.com/… as `nowhere`/…: a clone fails at once,
    without the network (git's GIT_CONFIG_COUNT/KEY/VALUE, read after its config files)."""
    return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.file://{nowhere}/.insteadOf",
            "GIT_CONFIG_VALUE_0": "https://github.com/", "GIT_TERMINAL_PROMPT": "0"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", default=os.environ.get("COLAB_PYTHON", "python3"),
                    help="the interpreter for .venv-colab (default $COLAB_PYTHON or python3)")
    ap.add_argument("--venv", type=Path, default=ROOT / ".venv-colab")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "colab")
    args = ap.parse_args()
    started = time.perf_counter()
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib

    freeze = freeze_file()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    print(f"Colab's versions from {freeze.relative_to(ROOT)}: {freeze.read_text().splitlines()[0][2:140]}…")
    pins = parse_freeze(freeze.read_text())
    py, notes, at_colab = build_venv(args.venv, args.python, pins, cpu_torch_pin(
        (ROOT / "constraints-cpu.txt").read_text()), deps)
    for note in notes:
        print("  substituted:", note)
    version = sh(py, "--version").strip()
    print(f"{args.venv.name}: {version}, {len(at_colab)} packages at Colab's versions "
          f"(built or checked in {time.perf_counter() - started:.0f} s)", flush=True)

    work = args.out / "runtime"  # a fresh "runtime" every run: /content, the HF cache and the course cache
    shutil.rmtree(work, ignore_errors=True)
    content, books, kernels = work / "content", work / "notebooks", work / "jupyter" / "kernels" / KERNEL
    for folder in (content, books, kernels, work / "hf", work / "cache"):
        folder.mkdir(parents=True)
    course_zip(content / "course-main.zip")
    for nn in NOTEBOOKS:
        (source,) = sorted((ROOT / "notebooks").glob(f"{nn}_*.ipynb"))
        colab_notebook(source, books / source.name, content)
    launch = "import google.colab; from ipykernel import kernelapp; kernelapp.launch_new_instance()"
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(py), "-Xfrozen_modules=off", "-c", launch, "-f", "{connection_file}"],
        "display_name": "Python 3 (Colab stack, google.colab stand-in)", "language": "python"}))

    before = venv_versions(py)
    env_before = dict(os.environ)
    for name in ("MISTRAL_API_KEY", "HF_TOKEN", "COURSE_BACKEND", "COURSE_LOCAL_API_KEY", "PYTHONPATH"):
        os.environ.pop(name, None)  # no secrets, as in a runtime where none was added; helpers only from the zip
    os.environ.update({"PYDEVD_DISABLE_FILE_VALIDATION": "1", "JUPYTER_PATH": str(work / "jupyter"),
                       "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                       "HF_HOME": str(work / "hf"), "COURSE_CACHE_DIR": str(work / "cache")})
    os.environ.update(no_github(work / "github-unreachable"))
    from helpers.course.runner import run_course

    try:
        run = run_course(only=NOTEBOOKS, out_root=args.out, kernel=KERNEL, folder=books, warm=False)
    finally:
        os.environ.clear()
        os.environ.update(env_before)

    problems = [f"{nb}: {r['status']} — {r['reason']}" for nb, r in
                json.loads((run / "summary.json").read_text()).items() if r["status"] != "ok"]
    for executed in sorted(run.glob("*.ipynb")):
        said = "".join("".join(o.get("text", "")) for c in json.loads(executed.read_text())["cells"][:3]
                       for o in c.get("outputs", []))
        if f"Course ready: {content}/course (helpers from {content}/course/helpers)" not in said:
            problems.append(f"{executed.stem}: the setup cell did not say the course was ready in {content}/course")
    after = venv_versions(py)
    replaced = {n: f"{before[n]} → {after.get(n)}" for n in before if pins.get(n) == before[n] != after.get(n)}
    if replaced:  # as on Colab, where the course needs newer; a kernel's own packages must stay (issue 31, item 4)
        print(f"the setup cell's pip replaced {len(replaced)} of Colab's packages, as it would on Colab: {replaced}")
    swapped = {n: v for n, v in replaced.items() if n in {canonical(k) for k in KERNEL_PACKAGES}}
    if swapped:
        problems.append(f"the setup cell's pip replaced packages the kernel had imported: {swapped}")
    minutes, seconds = divmod(round(time.perf_counter() - started), 60)
    print(f"colab-check: {version}, Colab versions of {freeze.name}, {len(notes)} substitution(s); "
          f"notebooks {' '.join(NOTEBOOKS)} in {run}; {minutes} min {seconds} s in all")
    for problem in problems:
        print("FAILED:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
