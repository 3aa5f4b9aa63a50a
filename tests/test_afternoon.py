"""scripts/afternoon.py: what counts as plumbing, and how minutes follow from words and lines (issue 33)."""

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import afternoon  # noqa: E402


def test_plumbing_is_the_setup_cell_the_check_cell_the_last_section_and_verdict_lines(tmp_path):
    nb = new_notebook(cells=[
        new_markdown_cell("# Title\n\nTwo hundred words " + "word " * 197),  # 200 words + the title's one
        new_code_cell('import sys\nif "google.colab" in sys.modules:\n    pass\n'),  # 3 plumbing lines
        new_code_cell("TOP_K = 3  # knob\n"),  # the parameters: code, not plumbing
        new_code_cell("check(globals(), TOP_K=Int(min=1))\n"),  # 1 plumbing line
        new_code_cell("answer = client.chat.complete(model=m, messages=msgs)\n\ntally.check(answer, 'Paris')\n"),
        new_markdown_cell("## 9. What we measured"),
        new_code_cell("record(answer=answer)\nprint('done')\n"),  # 2 plumbing lines: the last section
    ])
    path = tmp_path / "01_x.ipynb"
    nbformat.write(nb, str(path))
    c = afternoon.count(path)
    assert (c.code_lines, c.plumbing_lines) == (9, 7)
    assert c.words == 201 + 4  # "9. What we measured": the heading counts too
    assert abs(c.minutes - (205 / 200 + 9 * afternoon.SECONDS_PER_LINE / 60)) < 1e-9
    assert afternoon.count(path, run_s=60).minutes - c.minutes == 1.0


def test_link_targets_and_images_are_not_words():
    assert afternoon.markdown_words("[![Open In Colab](https://x/y.svg)](https://colab/z) Read [the docs](https://a.b/c).") == 3


def test_the_readme_minutes_are_the_scripts():
    readme = (afternoon.ROOT / "README.md").read_text()
    books = afternoon.ROOT / "notebooks"
    counts = [afternoon.count(p) for p in sorted([*books.glob("[0-9][0-9]_*.ipynb"), *books.glob("deep/*.ipynb")])]
    assert afternoon.readme_with_minutes(readme, counts) == readme, "run: python scripts/afternoon.py --readme"
    assert afternoon.readme_with_minutes(readme, [afternoon.Count(counts[0].name, 10**6, 0, 0)]) != readme  # can fail
