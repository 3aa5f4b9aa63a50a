"""Every model answer a teaching cell shows carries a verdict computed in the run (helpers.course.verdicts).

A code cell that shows a model's answer — it reads `choices[0].message`, decodes `generate` output, or prints a
reply's `.text` — must judge it (`tally.check(...)`, `judge(...)`, `tally.add(...)`), or carry the cell tag
`no-verdict` and a comment line `# no verdict: <why>` (e.g. the answer is only timed, or only its tokens counted).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
# notebooks whose shown answers are not all judged yet: each one listed here would be debt, named (none today)
NOT_YET: set[str] = set()
SHOWS_ANSWER = re.compile(r"choices\[0\]\.message|\.decode\(\s*(out|new_tokens|generated)|\bgreedy_answer\b|"
                          r"\.last\.text\b|\breply\.text\b")
JUDGED = re.compile(r"\.check\(|\bjudge\(|\.add\(\s*Verdict|\bverdicts?\b", re.I)


def shows_unjudged_answer(cell) -> bool:
    """True for a code cell that shows a model's answer without a verdict or a stated reason."""
    if cell.cell_type != "code" or not SHOWS_ANSWER.search(cell.source):
        return False
    if "no-verdict" in cell.get("metadata", {}).get("tags", []):
        return "# no verdict:" not in cell.source  # the tag must say why
    return not JUDGED.search(cell.source)


def teaching_cells(nb):
    """Code cells before the checks section (the last section holds CI checks and record())."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("## Checks"):
            break
        cells.append(cell)
    return cells


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem not in NOT_YET], ids=lambda p: p.name)
def test_every_shown_answer_gets_a_verdict(path):
    nb = nbformat.read(path, as_version=4)
    bad = [c.source.splitlines()[0] for c in teaching_cells(nb) if shows_unjudged_answer(c)]
    assert not bad, f"{path.name}: cells show a model answer without a verdict (helpers.course.verdicts): {bad}"


def test_the_rule_catches_an_unjudged_answer_and_accepts_a_judged_or_excused_one():
    shown = nbformat.v4.new_code_cell("r = client.chat.complete(model=M, messages=m)\n"
                                      "print(r.choices[0].message.content)")
    assert shows_unjudged_answer(shown)
    judged = nbformat.v4.new_code_cell(shown.source + "\ntally.check(r, 'Paris')")
    assert not shows_unjudged_answer(judged)
    excused = nbformat.v4.new_code_cell("# no verdict: only the latency is the lesson here\n" + shown.source)
    excused.metadata["tags"] = ["no-verdict"]
    assert not shows_unjudged_answer(excused)
    excused.source = shown.source  # the tag alone, without the reason, is not enough
    assert shows_unjudged_answer(excused)


def test_not_yet_lists_only_notebooks_that_exist():
    assert NOT_YET <= {p.stem for p in NOTEBOOKS}
