"""scripts/test_times.py: make test's JUnit XML summed by kind of test, for the README's time table."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import test_times  # noqa: E402

XML = """<testsuites><testsuite name="pytest">
<testcase classname="tests.test_gpu" name="test_a" time="2.5"/>
<testcase classname="tests.test_hygiene" name="test_b[01]" time="0.5"/>
<testcase classname="notebooks.05_api_rag.ipynb" name="Cell 3" time="40.0"/>
<testcase classname="notebooks.05_api_rag.ipynb" name="Cell 4" time="2.0"/>
<testcase classname="tests.test_nb_api" name="test_05_variant" time="30.0"/>
<testcase classname="tests.test_nb_twin" name="test_08_twin" time="25.0"/>
</testsuite></testsuites>"""


def test_times_are_summed_by_kind(tmp_path):
    path = tmp_path / "t.xml"
    path.write_text(XML)
    seconds, count = test_times.totals(path)
    assert seconds == {"unit": 2.5, "hygiene": 0.5, "nbval": 42.0, "papermill": 30.0, "twin": 25.0}
    assert count == {"unit": 1, "hygiene": 1, "nbval": 2, "papermill": 1, "twin": 1}
    text = test_times.table(path, wall=80)
    assert "| nbval: every notebook once, default parameters | 2 | 42 | 42% |" in text and "| 80 |" in text


def test_cells_run_against_a_fake_client_count_as_unit_tests():
    assert test_times.kind_of("tests.test_nb_api_fields") == "unit"
    assert test_times.kind_of("tests.test_nb_selfhost") == "papermill"
    assert test_times.kind_of("tests.test_nb_platform_a") == "platform"


def test_a_missing_file_says_how_to_make_it(tmp_path, capsys):
    assert test_times.main([str(tmp_path / "none.xml")]) == 2
    assert "run `make test` first" in capsys.readouterr().err
