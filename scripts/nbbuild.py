"""Write a course notebook from a list of cells, with the course's fixed opening (title, badge, Colab setup).

Used by maintainers to create or regenerate a notebook; the committed .ipynb is the source of truth.

    from scripts.nbbuild import md, code, write_notebook
    write_notebook("notebooks/01_api_quickstart.ipynb", title=..., learn=..., runs_on=..., params=..., cells=[...])
"""

from __future__ import annotations

from pathlib import Path

import nbformat

REPO = "mistral-two-paths/course"  # GitHub owner/name the Colab badge and setup cell point at


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(text: str, *tags: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


COLAB_SETUP = f'''# Colab only: fetch the course and install it (locally, `make course` / `make install` did this already).
import sys

if "google.colab" in sys.modules:
    import os

    if not os.path.isdir("/content/course"):  # re-running this cell keeps the copy you have
        !git clone -q --depth 1 https://github.com/{REPO} /content/course
    %pip install -q -e /content/course
    sys.path.insert(0, "/content/course")
    %cd /content/course/notebooks
    from google.colab import output

    output.enable_custom_widget_manager()  # ipywidgets 8 playgrounds render in Colab'''


def write_notebook(path: str | Path, *, title: str, learn: str, runs_on: str, params: str,
                   cells: list[nbformat.NotebookNode], requires: list[str] | None = None) -> Path:
    """Assemble the notebook: title + what you'll learn + runs on, badge, Colab setup, parameters, then `cells`."""
    path = Path(path)
    badge = (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
             f"(https://colab.research.google.com/github/{REPO}/blob/main/notebooks/{path.name})")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        md(f"# {title}\n\n{learn.strip()}\n\n**Runs on:** {runs_on}\n\n{badge}"),
        code(COLAB_SETUP),
        md("## Parameters\n\nEvery knob of this notebook. `None` means: take the environment variable "
           "(`COURSE_<NAME>`), else the course default — see the README's parameter table. "
           "Papermill overrides these (`make course PARAMS=\"-p NAME VALUE\"`)."),
        code(params, "parameters"),
        *cells,
    ]
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["course"] = {"requires": requires or []}
    nbformat.validate(nb)
    path.write_text(nbformat.writes(nb) + "\n")
    return path
