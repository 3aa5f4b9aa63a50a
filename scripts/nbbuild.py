"""Write a course notebook from a list of cells, with the course's fixed opening (title, badge, Colab setup);
and publish the course under another repository (`make publish REPO=github.com/<owner>/<name>`).

Used by maintainers to create or regenerate a notebook; the committed .ipynb is the source of truth.

    from scripts.nbbuild import md, code, write_notebook
    write_notebook("notebooks/01_api_quickstart.ipynb", title=..., learn=..., runs_on=..., params=...,
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
    """The markdown "Open in Colab" badge for notebooks/<notebook> in `repo` (a deep dive: "deep/05a_….ipynb")."""
    return f"[![Open In Colab]({BADGE_SVG})]({COLAB}/{repo}/blob/main/notebooks/{notebook})"


def colab_setup(repo: str) -> str:
    """The setup cell: in Colab only, fetch the course (clone, or an uploaded zip) and run helpers/course/colab.py,
    which installs it and checks the install worked. Four lines; the logic lives in that file.

    The shell line: a folder `course` already there is kept (a re-run installs it again, nothing is fetched); else a
    clone (GIT_TERMINAL_PROMPT=0: a repository GitHub does not serve fails at once instead of asking for a password);
    else any zip in /content (GitHub's Download ZIP has one top folder, which becomes `course`); else the message.
    `runpy.run_path`, not `%run`: IPython's %run prints a script's error and lets the cell succeed, so Run all would go
    on to fail on `import helpers` three cells later; runpy's error stops the cell (and leaves no names behind)."""
    return COLAB_SETUP.replace("{REPO}", repo)


COLAB_SETUP = '''import runpy, sys  # Colab only (about a minute): fetch the course (git, or a zip you uploaded to /content), install it
if "google.colab" in sys.modules:  # working from a fork? put its URL in the next line
    !cd /content && (test -d course || GIT_TERMINAL_PROMPT=0 git clone -q --depth 1 https://github.com/{REPO} course 2>/dev/null || (unzip -qo '*.zip' -d zip && mv zip/*/ course) || echo "Could not fetch the course: no clone of https://github.com/{REPO} and no course zip in /content. Put your fork's URL in this cell, or upload the course's zip (on GitHub: Code, Download ZIP) into /content (Files panel, left), then run this cell again.")
    runpy.run_path("/content/course/helpers/course/colab.py", init_globals={"DRIVE": False}, run_name="__main__")  # DRIVE=True: models kept on Google Drive'''


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(text: str, *tags: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def check_cell(notebook: str) -> nbformat.NotebookNode:
    """The cell after `parameters`: one line, `check(globals(), "<NN>")`, whose kinds live in helpers/course/knobs.py."""
    return code(f'from helpers.course.knobs import check; check(globals(), "{notebook}")  '
                "# every parameter above, checked: a bad value stops here")


def write_notebook(path: str | Path, *, title: str, learn: str, runs_on: str, params: str,
                   cells: list[nbformat.NotebookNode], requires: list[str] | None = None) -> Path:
    """Assemble the notebook: title + what you'll learn + runs on, badge, Colab setup, parameters and the check of
    their values (declared in helpers/course/knobs.py under the notebook's number), then `cells`."""
    path = Path(path)
    repo = course_repo()
    name = f"deep/{path.name}" if path.parent.name == "deep" else path.name
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        md(f"# {title}\n\n{learn.strip()}\n\n**Runs on:** {runs_on}\n\n{badge(repo, name)}"),
        code(colab_setup(repo)),
        md("## Parameters\n\nEvery knob of this notebook. `None` means: take the environment variable "
           "(`COURSE_<NAME>`), else the course default — see the [parameter table](../docs/parameters.md). "
           "Papermill overrides these (`make course PARAMS=\"-p NAME VALUE\"`)."),
        code(params, "parameters"),
        check_cell(path.name[:2]),
        *cells,
    ]
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["course"] = {"requires": requires or []}
    nbformat.validate(nb)
    path.write_text(nbformat.writes(nb) + "\n")
    return path


# ---------------------------------------------------------------- publishing under another repository
NOTEBOOK = r"((?:deep/)?[0-9][0-9][a-z]?_[a-z0-9_]+\.ipynb)"  # under notebooks/: 05_api_rag.ipynb, deep/05a_….ipynb
BADGE_LINK = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\(" + re.escape(COLAB) + r"/[^)\s]+/notebooks/" + NOTEBOOK + r"\)")
COLAB_LINK = re.compile(re.escape(COLAB) + r"/([^/\s)]+/[^/\s)]+)/blob/main/notebooks/" + NOTEBOOK)


def course_notebooks(root: Path = ROOT) -> list[Path]:
    """Every notebook that carries a badge and a setup cell: the numbered series, then the deep dives (notebooks/deep)."""
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")) + sorted(
        (root / "notebooks" / "deep").glob("[0-9][0-9]*_*.ipynb"))


def setup_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook's Colab setup cell (the first code cell that runs only in Colab)."""
    return next(c for c in nb.cells if c.cell_type == "code" and SETUP_MARK in c.source)


def readme_colab_links(repo: str, root: Path = ROOT) -> str:
    """The README's block between <!-- COLAB-LINKS --> markers: one line, the repository and a Colab link per numbered
    notebook (the afternoon's series; a deep dive opens from its own badge)."""
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
    for path in course_notebooks(root):
        raw = path.read_text()
        nb = nbformat.reads(raw, as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "markdown")
        if not BADGE_LINK.search(first.source):
            raise ValueError(f"{path.relative_to(root)}: no Open in Colab badge in its first markdown cell (add "
                             "scripts/nbbuild.py's badge() line, then publish again)")
        first.source = BADGE_LINK.sub(lambda m: badge(repo, m[1]), first.source)
        if not any(c.cell_type == "code" and SETUP_MARK in c.source for c in nb.cells):
            raise ValueError(f"{path.relative_to(root)}: no Colab setup cell (put scripts/nbbuild.py's colab_setup() "
                             "text in its first code cell, then publish again)")
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
