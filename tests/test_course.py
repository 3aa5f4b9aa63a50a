"""The course runner: record() and a papermill run that writes summary.json / summary.md."""

from __future__ import annotations

import json

import nbformat
import pytest

from helpers.course import runner as course


def test_record_writes_metrics_file_and_returns_table(tmp_path, monkeypatch):
    target = tmp_path / "m" / "nb.json"
    monkeypatch.setenv(course.METRICS_ENV, str(target))
    import numpy as np

    table = course.record(source="test box", tokens=np.int64(12), cost=0.5, nested={"a": {"b": 1}}, bad=float("nan"))
    data = json.loads(target.read_text())
    assert data == {"tokens": 12, "cost": 0.5, "nested": {"a": {"b": 1}}, "bad": None, "measured_on": "test box"}
    assert table.loc["nested.a.b", "value"] == 1
    course.record(more=2)  # merges, keeps earlier keys
    assert json.loads(target.read_text())["tokens"] == 12 and json.loads(target.read_text())["more"] == 2


def test_record_without_course_run_only_shows(monkeypatch):
    monkeypatch.delenv(course.METRICS_ENV, raising=False)
    table = course.record(x=1)
    assert table.loc["x", "value"] == 1


def test_record_table_shows_headline_rows_in_full_and_names_the_rest(monkeypatch):
    monkeypatch.delenv(course.METRICS_ENV, raising=False)
    long = "a source that says where and when, longer than pandas' fifty characters"
    table = course.record(long, skipped=None, verdicts={"right": 4, "wrong": 1}, cost=0.00001035,
                          **{f"m{i:02d}": i for i in range(80)})
    assert len(table) == 85 and table.loc["verdicts.right", "value"] == 4 and table.loc["m79", "value"] == 79
    for shown in (repr(table), table._repr_html_()):
        assert "right: 4 · wrong: 1" in shown and "0.00001035" in shown and long in shown and "m04" in shown
        assert "m05" not in shown.split("not shown")[0] and "skipped" not in shown.split("not shown")[0]
        assert "76 more recorded for the course summary, not shown: skipped, m05," in shown and "m79" not in shown
    assert repr(course.record(x=1.5)).endswith("1.5")  # nothing left out: no line about the rest


def _notebook(path, body: str, params: str = "X = 1"):
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_run_course_summary_ok_failed_skipped(tmp_path):
    books = tmp_path / "nbs"
    books.mkdir()
    _notebook(books / "00_good.ipynb", "from helpers.course import record\nrecord(x=X * 2)")
    _notebook(books / "01_bad.ipynb", "raise ValueError('boom')")
    _notebook(books / "02_needs_key.ipynb", "print('never')")
    nb = nbformat.read(books / "02_needs_key.ipynb", as_version=4)
    nb.metadata["course"] = {"requires": ["api_key"]}
    nbformat.write(nb, books / "02_needs_key.ipynb")

    with pytest.raises(ValueError, match="UNUSED: no selected notebook declares it"):
        course.run_course({"X": 21, "UNUSED": 1}, out_root=tmp_path / "runs", folder=books)
    out = course.run_course({"X": 21}, out_root=tmp_path / "runs", folder=books)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["00_good"]["status"] == "ok" and summary["00_good"]["metrics"] == {"x": 42}
    assert summary["00_good"]["parameters"] == {"X": 21} and summary["02_needs_key"]["parameters"] == {}
    assert "X=21" in (out / "summary.md").read_text()
    assert summary["01_bad"]["status"] == "failed" and "boom" in summary["01_bad"]["reason"]
    assert summary["02_needs_key"]["status"] == "skipped" and "MISTRAL_API_KEY" in summary["02_needs_key"]["reason"]
    assert all(isinstance(e["seconds"], float) for e in summary.values())
    assert (tmp_path / "runs" / "latest").resolve() == out.resolve()
    assert "| 00_good | ok |" in (out / "summary.md").read_text()
    assert (out / "00_good.ipynb").exists()


def test_only_with_no_match_is_clear(tmp_path):
    with pytest.raises(ValueError, match="No notebook matches"):
        course.list_notebooks(["99"], folder=tmp_path)


def test_secret_parameters_are_refused(tmp_path):
    with pytest.raises(ValueError, match="Refusing parameter.*MISTRAL_API_KEY.*environment"):
        course.run_course({"MISTRAL_API_KEY": "abc"}, out_root=tmp_path / "runs", folder=tmp_path)
    assert not (tmp_path / "runs").exists(), "nothing written when refused"


def test_two_runs_in_one_second_get_their_own_folders(tmp_path):
    a = course._new_run_folder(tmp_path)
    b = course._new_run_folder(tmp_path)
    assert a != b and a.is_dir() and b.is_dir()


def test_a_real_latest_folder_is_never_deleted(tmp_path):
    books = tmp_path / "nbs"
    books.mkdir()
    _notebook(books / "00_good.ipynb", "from helpers.course import record\nrecord(x=1)")
    runs = tmp_path / "runs"
    (runs / "latest").mkdir(parents=True)
    (runs / "latest" / "mine.txt").write_text("keep me")
    out = course.run_course({}, out_root=runs, folder=books)
    assert (runs / "latest" / "mine.txt").read_text() == "keep me"
    assert json.loads((out / "summary.json").read_text())["00_good"]["status"] == "ok"


def test_a_parameter_papermill_cannot_parse_is_named_not_dropped(tmp_path):
    books = tmp_path / "nbs"
    books.mkdir()
    _notebook(books / "05_fp16.ipynb", "print(PRECISION)", params='PRECISION = "auto"  # "auto" = fp16 on CUDA, fp32 on CPU; or "fp32" | "bf16"')
    with pytest.raises(ValueError, match="PRECISION: papermill cannot parse its line in 05_fp16"):
        course.run_course({"PRECISION": "bf16"}, out_root=tmp_path / "runs", folder=books)


def test_secret_names_are_refused_but_token_counts_are_not():
    course.refuse_secret_parameters({"MAX_TOKENS": 16, "NEW_TOKENS": 8, "LOCAL_MODEL": "mistral-small-2506"})
    for bad in ({"HF_TOKEN": "x"}, {"api_key": "x"}, {"NOTE": "Ab3" + "x" * 29}):
        with pytest.raises(ValueError, match="Refusing parameter"):
            course.refuse_secret_parameters(bad)


@pytest.mark.notebook
def test_a_notebook_refuses_a_key_passed_as_a_papermill_parameter(tmp_path):
    import papermill as pm

    books = tmp_path / "nbs"
    books.mkdir()
    _notebook(books / "k.ipynb", "from helpers import settings\nsettings.resolve(BACKEND='local')", params="BACKEND = None")
    secret = "Zx9" + "q" * 29
    with pytest.raises(pm.PapermillExecutionError) as info:
        pm.execute_notebook(str(books / "k.ipynb"), str(tmp_path / "out.ipynb"), parameters={"MISTRAL_API_KEY": secret},
                            kernel_name="python3", progress_bar=False)
    assert "looks like a secret" in info.value.evalue and "environment" in info.value.evalue
    assert secret not in info.value.evalue


def test_the_next_kernel_is_warmed_with_the_notebooks_imports_and_outputs_stay_cold(tmp_path):
    """A warmed kernel has the notebook's own imports done (colorsys: nothing else imports it), its own metrics file,
    and execution counts from 1, as a cold one; `warm=False` starts each kernel when its notebook begins."""
    books = tmp_path / "nbs"
    books.mkdir()
    probe = ("import os, sys\nprint('warm' if 'colorsys' in sys.modules else 'cold')\n"
             "from helpers.course import record\nrecord(file=os.path.basename(os.environ['COURSE_METRICS_FILE']))")
    _notebook(books / "00_first.ipynb", probe + "\nimport colorsys")
    _notebook(books / "01_second.ipynb", probe + "\nimport colorsys")
    for warm, second in ((True, "warm"), (False, "cold")):
        out = course.run_course({}, out_root=tmp_path / f"runs-{warm}", folder=books, warm=warm)
        summary = json.loads((out / "summary.json").read_text())
        assert [e["status"] for e in summary.values()] == ["ok", "ok"]
        assert summary["01_second"]["metrics"]["file"] == "01_second.json"
        cells = nbformat.read(out / "01_second.ipynb", as_version=4).cells
        code = [c for c in cells if c.cell_type == "code"]
        assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
        printed = "".join(o.get("text", "") for o in code[-1].outputs)
        assert printed.startswith(second), printed
        first = nbformat.read(out / "00_first.ipynb", as_version=4).cells
        assert "cold" in "".join(o.get("text", "") for o in first[-1].outputs)  # the first kernel starts cold


def test_imports_are_read_from_code_cells(tmp_path):
    from helpers.course.warmkernel import imported_modules

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import json, os.path\nfrom helpers.client import get_client\nx = 1"),
                nbformat.v4.new_code_cell("%matplotlib inline\nimport numpy"),  # a magic: skipped, not an error
                nbformat.v4.new_code_cell("from . import nothing\ndef f():\n    import hidden"),
                nbformat.v4.new_markdown_cell("import markdown_is_not_code")]
    nbformat.write(nb, tmp_path / "n.ipynb")
    assert imported_modules(tmp_path / "n.ipynb") == ["json", "os.path", "helpers.client"]


def test_a_kernel_that_cannot_be_warmed_leaves_papermill_to_start_one(tmp_path):
    from helpers.course.warmkernel import WarmKernel

    _notebook(tmp_path / "00_x.ipynb", "x = 1")
    warm = WarmKernel(tmp_path / "00_x.ipynb", "no-such-kernel", tmp_path, {}, [])
    assert warm.take() is None  # run_course then passes no km= and papermill starts the kernel itself
    warm.close()  # nothing to shut down, and no error


def test_a_notebook_reads_what_another_recorded_in_the_same_run(tmp_path, monkeypatch):
    """10's function-calling cell takes 09's record from the same course run (runner.recorded_by), else nothing."""
    from helpers.course.runner import METRICS_ENV, recorded_by

    monkeypatch.delenv(METRICS_ENV, raising=False)
    assert recorded_by("09") == {}  # a notebook run alone
    (tmp_path / "09_selfhost_tools_json.json").write_text(json.dumps({"schema_valid": {"constrained": 1.0}}))
    monkeypatch.setenv(METRICS_ENV, str(tmp_path / "10_serving_decision_matrix.json"))
    assert recorded_by("09") == {"schema_valid": {"constrained": 1.0}} and recorded_by("08") == {}
