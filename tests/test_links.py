"""Every link to a notebook — in README.md and in the notebooks' markdown — resolves to a file that exists, and the
number a link shows is the number of the file it opens (the series was renumbered once; links must follow)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
# [label](target.ipynb) or [label](https://…/notebooks/target.ipynb); the target may carry a #fragment
LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]*?([0-9][0-9]_[A-Za-z0-9_]+)\.ipynb)(?:#[^)]*)?\)")
TABLE_ROW = re.compile(r"^\| ([0-9][0-9]) \| \[([0-9][0-9]_[A-Za-z0-9_]+)\]", re.M)


def notebook_links(text: str, base: Path) -> list[tuple[str, str, Path]]:
    """(label, target, the file it resolves to) for every markdown link to a notebook in `text`."""
    found = []
    for label, target, stem in LINK.findall(text):
        if target.startswith("http"):  # Colab/GitHub links name notebooks/<file> in the course repository
            path = NOTEBOOKS / f"{stem}.ipynb"
        else:
            path = (base / target).resolve()
        found.append((label, target, path))
    return found


def broken(text: str, base: Path) -> list[str]:
    """Links whose file is missing, or whose label starts with a number that is not the file's number."""
    bad = []
    for label, target, path in notebook_links(text, base):
        if not path.is_file():
            bad.append(f"{target}: no such file")
        shown = re.match(r"\s*([0-9][0-9])\b", label)
        if shown and shown.group(1) != path.name[:2]:
            bad.append(f"[{label}]({target}): shows {shown.group(1)}, opens {path.name}")
    return bad


def _sources():
    yield "README.md", (ROOT / "README.md").read_text(), ROOT
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        yield path.name, "\n".join(c.source for c in nb.cells if c.cell_type == "markdown"), NOTEBOOKS


SOURCES = list(_sources())


@pytest.mark.parametrize("name,text,base", SOURCES, ids=[s[0] for s in SOURCES])
def test_every_notebook_link_resolves(name, text, base):
    assert not broken(text, base), f"{name}: {broken(text, base)}"


def test_readme_links_every_notebook_and_numbers_its_table_rows_by_file():
    readme = (ROOT / "README.md").read_text()
    linked = {path.name for _, _, path in notebook_links(readme, ROOT)}
    every = {p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}
    assert every <= linked, f"README.md links none of {sorted(every - linked)}"
    rows = TABLE_ROW.findall(readme)
    assert {f"{stem}.ipynb" for _, stem in rows} == every, "the NOTEBOOK-TABLE must list every notebook once"
    assert all(number == stem[:2] for number, stem in rows), rows


def test_each_notebook_but_the_last_points_to_the_next():
    books = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    for path, following in zip(books, books[1:], strict=False):
        last = nbformat.read(path, as_version=4).cells[-1].source
        assert f"]({following.name})" in last, f"{path.name} should end with 'Next: [...]({following.name})'"


def test_the_link_check_catches_a_missing_file_and_a_wrong_number(tmp_path):
    (tmp_path / "03_model_selection.ipynb").write_text("{}")
    assert broken("Next: [03 · Model selection](03_model_selection.ipynb)", tmp_path) == []
    assert broken("Next: [02 · Model selection](02_model_selection.ipynb)", tmp_path) == [
        "02_model_selection.ipynb: no such file"]
    assert broken("Next: [02 · Model selection](03_model_selection.ipynb)", tmp_path) == [
        "[02 · Model selection](03_model_selection.ipynb): shows 02, opens 03_model_selection.ipynb"]


DOC_LINK = re.compile(r"\]\(((?!https?:|#|mailto:)[^)\s#]+)(?:#[^)]*)?\)")


def test_every_relative_link_in_the_docs_and_notebooks_resolves():
    """README.md, CONTRIBUTING.md, docs/*.md and the notebooks' markdown: a relative link names a file that exists."""
    texts = [(p.name, p.read_text(), p.parent) for p in [ROOT / "README.md", ROOT / "CONTRIBUTING.md",
                                                          *sorted((ROOT / "docs").glob("*.md"))]]
    texts += [(name, text, base) for name, text, base in SOURCES if name != "README.md"]
    missing = [f"{name}: {target}" for name, text, base in texts for target in DOC_LINK.findall(text)
               if not (base / target).exists()]
    assert not missing, missing
    assert any("docs/parameters.md" in t for _, t, _ in texts), "the notebooks point at the parameter table"
