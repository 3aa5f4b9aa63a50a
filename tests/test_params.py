"""Parameters checked where they enter (issue 19): each notebook's check cell, and the runner reading the same cell."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from helpers import settings
from helpers.course import keyguard, params
from helpers.course import runner as course
from helpers.course.evals import patterns
from helpers.course.params import (
    Float,
    Int,
    ListOf,
    ModelConfig,
    OneOf,
    ParameterError,
    Priced,
    Setting,
    Text,
    problems,
)

ROOT = Path(__file__).resolve().parent.parent
BOOKS = course.list_notebooks()


def _cells(nb: Path) -> tuple[str, str]:
    """(parameters cell, the check cell after it) of a notebook, as source text."""
    cells = json.loads(nb.read_text())["cells"]
    at = next(i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))
    return "".join(cells[at]["source"]), "".join(cells[at + 1]["source"])


def _comments(parameters_cell: str) -> dict[str, str]:
    """Each parameter's comment: the text after `#` on its line and on the comment lines that continue it."""
    found: dict[str, str] = {}
    name = None
    for line in parameters_cell.splitlines():
        assigned = re.match(r"([A-Z_][A-Z0-9_]*)\s*=.*?#(.*)$", line)
        if assigned:
            name = assigned.group(1)
            found[name] = assigned.group(2)
        elif line.lstrip().startswith("#") and name:
            found[name] += " " + line.lstrip("# ")
    return found


# ---------------------------------------------------------------- the declarations themselves
@pytest.mark.parametrize("nb", BOOKS, ids=lambda p: p.stem)
def test_every_parameter_is_declared_and_its_default_passes(nb):
    defaults, declared = course._declaration(nb)
    assert declared is not None, f"{nb.stem}: no check(globals(), …) cell right after the parameters cell"
    assert set(declared) == set(params.literal_assignments(_cells(nb)[0])), nb.stem
    assert problems(defaults, declared, defaults, cwd=nb.parent) == []


def _bounds_and_choices(kind) -> list[str]:
    """What a declaration promises, as the words its comment must hold."""
    if isinstance(kind, ListOf):
        return _bounds_and_choices(kind.item)
    if isinstance(kind, OneOf):
        return [json.dumps(c) for c in kind.choices]
    words = []
    if isinstance(kind, (Int, Float)):
        for bound in (kind.min, kind.max, getattr(kind, "above", None)):
            if bound is not None:
                words.append(str(bound).split(" ")[0])  # 6, or "TURNS" of "TURNS - 1"
        if getattr(kind, "auto", False):
            words.append('"auto"')
    return words


@pytest.mark.parametrize("nb", BOOKS, ids=lambda p: p.stem)
def test_each_comment_states_what_its_declaration_accepts(nb):
    """The comment and the declaration cannot drift apart: every choice, bound and "auto" is in the comment."""
    comments = _comments(_cells(nb)[0])
    _, declared = course._declaration(nb)
    for name, kind in declared.items():
        for word in _bounds_and_choices(kind):
            assert re.search(rf"(?<![\w.]){re.escape(word)}(?![\w])", comments[name]), \
                f"{nb.stem}: {name}'s comment does not say {word} ({kind})"
        assert "=" not in comments[name], f"{nb.stem}: {name}'s comment holds '=' (papermill misreads it)"


def test_the_comment_check_can_fail():
    assert _bounds_and_choices(Int(min=1, max="TURNS - 1")) == ["1", "TURNS"]
    assert _bounds_and_choices(ListOf(OneOf("int8", "nf4"))) == ['"int8"', '"nf4"']
    assert _comments('A = 1  # one\n#     more\nB = "x"  # b') == {"A": " one more", "B": " b"}


def test_bounds_follow_the_data_they_count():
    """Counts capped by the data: a declaration that outgrew (or outlived) its data would cap a count silently."""
    from helpers import catalog

    data = patterns.load_messages()
    test = data[data.split == "test"]
    decl = {nb.stem[:2]: course._declaration(nb)[1] for nb in BOOKS}
    decl["02a"] = course._declaration(ROOT / "notebooks/deep/02a_prompt_patterns.ipynb")[1]
    assert decl["02"]["N_MESSAGES"].max == int(test.injected_label.isna().sum())  # 02 picks from the plain ones
    assert decl["02a"]["N_MESSAGES"].max == len(test)
    assert decl["02a"]["N_MESSAGES"].min == int(test.injected_label.notna().sum())  # always included: the fewest
    assert decl["02a"]["N_EXTRACT"].max == int(test.injected_label.isna().sum())
    assert decl["02"]["K_SHOTS"].max == decl["02a"]["K_SHOTS"].max == int((data.split == "example").sum())
    assert decl["05"]["N_ANSWERS"].max == len(json.loads((ROOT / "data/handbook_eval.json").read_text())["questions"])
    payments = (ROOT / "data/payments.csv").read_text().strip().splitlines()
    assert decl["09"]["N_CASES"].max == len(payments) - 1  # one JSON extraction per row
    assert Priced()._aliases() == [a for a, t in catalog.load_tiers().items() if t.tier_rank > 0]
    from helpers.memory import shipped_configs

    assert params.shipped_configs() == shipped_configs()


# ---------------------------------------------------------------- the kinds
def _one(kind, value, name="X", **others):
    found = problems({name: value, **others}, {name: kind})
    return found[0] if found else None


def test_int_float_oneof_text():
    assert _one(Int(min=1), 3) is None and _one(Int(min=1, auto=True), "auto") is None
    assert "is below 1" in _one(Int(min=1), 0) and "accepts a whole number of at least 1" in _one(Int(min=1), 0)
    assert "not a whole number" in _one(Int(), True) and "not a whole number" in _one(Int(), 2.0)
    assert "without quotes" in _one(Int(), "3")
    assert "multiple of 2" in _one(Int(min=16, max=24, multiple_of=2), 17)
    assert "is above 24" in _one(Int(min=16, max=24), 40)
    assert _one(Float(min=0, max=2), 1) is None and "not a number" in _one(Float(), "hot")
    assert "without quotes" in _one(Float(), "0.7") and "without quotes" not in _one(Float(), "hot")
    assert "not a number" in _one(Float(), float("nan")) and "not above 0" in _one(Float(above=0), 0)
    assert _one(Float(min=0, max=1, auto=True), "auto") is None and "not a number" in _one(Float(min=0, max=1), "auto")
    assert 'or "auto"' in _one(Float(min=0, max=1, auto=True), 2) and "is above 1" in _one(Float(max=1, auto=True), 2)
    assert "did you mean 'l2'" in _one(OneOf("cosine", "l2"), "L2")
    assert "e.g. X='cosine'" in _one(OneOf("cosine", "l2"), "l3")
    assert "non-empty" in _one(Text(), "") and _one(Text(), "api-rag") is None


def test_a_bound_may_name_another_parameter():
    kind = Int(min=1, max="TURNS - 1")
    assert _one(kind, 5, TURNS=6) is None
    assert "is above TURNS - 1 (5 here)" in _one(kind, 6, TURNS=6)
    assert "below max(C) (16 here)" in _one(Int(min="C"), 4, C=[1, 4, 16])
    assert "e.g. X=16" in _one(Int(min="C"), 4, C=[1, 4, 16])  # the example is itself valid
    assert _one(Int(min="C"), 4, C="oops") is None  # C is wrong itself and gets its own message


def test_lists_are_checked_element_by_element():
    kind = ListOf(OneOf("int8", "nf4"))
    assert _one(kind, ["nf4"]) is None
    assert "element 1 ('int3') is not an accepted value" in _one(kind, ["int8", "int3"])
    assert "is empty" in _one(kind, []) and "is not a list (write it in brackets, e.g. [4])" in _one(ListOf(Int()), 4)
    assert "element 1 (0) is below 1" in _one(ListOf(Int(min=1)), [1, 0])


def test_settings_knobs_are_checked_by_settings_own_functions(monkeypatch, tmp_path):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    assert "BACKEND='remote' is not an accepted value" in _one(Setting(), "remote", name="BACKEND")
    assert _one(Setting(), "LOCAL", name="BACKEND") is None  # settings lower-cases it too
    assert "is not one of auto, cpu" in _one(Setting(), "gpu", name="DEVICE")
    assert "is not an http(s) URL" in _one(Setting(), "localhost:8000", name="LOCAL_URL")
    from helpers.device import cuda_available

    if not cuda_available():  # settings' own refusal, caught here before any model loads
        assert "DEVICE='cuda' is refused: torch sees no CUDA GPU" in _one(Setting(), "cuda", name="DEVICE")
    real = settings.resolve_device

    def twin_aware(device="auto"):  # when settings learns a value (issue 17's twin:t4), the check follows
        return "cpu" if device == "twin:t4" else real(device)

    monkeypatch.setattr(settings, "resolve_device", twin_aware)
    assert _one(Setting(), "twin:t4", name="DEVICE") is None
    monkeypatch.setenv("COURSE_DEVICE", "gpu")  # None means the environment variable: that value is checked
    assert "$COURSE_DEVICE='gpu'" in _one(Setting(), None, name="DEVICE")


def test_local_model_paths_are_checked_before_transformers(tmp_path):
    assert _one(Setting(), "smollm2-135m", name="LOCAL_MODEL") is None
    assert _one(Setting(), "mistralai/Mistral-7B-Instruct-v0.3", name="LOCAL_MODEL") is None
    assert _one(Setting(), "config:mistral-7b-instruct-v0.3", name="LOCAL_MODEL") is None
    missing = _one(Setting(), str(tmp_path / "no-such-model"), name="LOCAL_MODEL")
    assert "looks like a path" in missing and "does not exist" in missing
    assert "does not exist" in _one(Setting(), "./models/nope", name="LOCAL_MODEL")
    assert "did you mean 'smollm2-135m'" in _one(Setting(), "smollm2-135", name="LOCAL_MODEL")
    assert "hub id ('org/name')" in _one(Setting(), "mistral7b", name="LOCAL_MODEL")
    (tmp_path / "empty").mkdir()
    assert "without a config.json" in _one(Setting(), str(tmp_path / "empty"), name="LOCAL_MODEL")
    (tmp_path / "empty" / "config.json").write_text("{}")
    assert _one(Setting(), str(tmp_path / "empty"), name="LOCAL_MODEL") is None
    assert "shipped configs" in _one(Setting(), "config:./nope", name="LOCAL_MODEL")
    assert "shipped configs" in _one(ModelConfig(), "./nope") and _one(ModelConfig(), "mistral-7b-instruct-v0.1") is None
    assert "no price row" in _one(ListOf(Priced()), ["mistral-tiny-latest"])


def test_key_shaped_values_are_refused_and_never_shown():
    for key in ("sk-" + "a1" * 10, "hf_" + "Ab3" * 4, "Zx9" + "q" * 29):  # 23 chars with sk-, short hf_, 32 plain
        assert keyguard.looks_like_key(key), key
        for value in (key, [key], {"a": key}):
            found = _one(Text(), value, name="CHAT_MODEL")
            assert found and "CHAT_MODEL" in found and "API key" in found and key not in found
    for fine in ("mistral-small-2506", "smollm2-135m", "sk-abc", "hf_transfer", "skip-1234567890", "api-rag"):
        assert not keyguard.looks_like_key(fine), fine


def test_check_raises_one_error_naming_every_bad_parameter():
    with pytest.raises(ParameterError) as info:
        params.check({"TOP_K": 0, "METRIC": "l3", "MAX_TOKENS": 8}, TOP_K=Int(min=1), METRIC=OneOf("cosine", "l2"),
                     MAX_TOKENS=Int(min=1))
    text = str(info.value)
    assert text.startswith("2 parameters are wrong") and "TOP_K=0" in text and "METRIC='l3'" in text
    assert "MAX_TOKENS" not in text
    with pytest.raises(NameError, match="NOT_SET"):
        params.check({}, NOT_SET=Int())


# ---------------------------------------------------------------- each notebook's own cell, as papermill runs it
BAD = {  # notebook → (parameter, a bad value, its kind): one per kind the notebook has
    "00": [("BACKEND", "remote", "enum"), ("LOCAL_MODEL", "./no-such-model", "path"), ("CHAT_MODEL", 3, "type")],
    "01": [("TEMPERATURE", "hot", "type"), ("MAX_TOKENS", 0, "range"), ("BACKEND", "remote", "enum")],
    "02": [("K_SHOTS", "two", "type"), ("KEEP_TURNS", 6, "range"), ("N_MESSAGES", 100, "range"), ("N_MESSAGES", 0, "range"),
           ("BACKEND", "Mistral AI", "enum")],
    "03": [("MODELS", ["mistral-small-latest", "gpt-4"], "list element"), ("MODELS", "mistral-small-latest", "type"),
           ("MAX_TOKENS", 0, "range")],
    "04": [("TOOL_CHOICE", "anyy", "enum"), ("MAX_TURNS", 0, "range"), ("SEED", 1.5, "type")],
    "05": [("TOP_K", 0, "range"), ("N_ANSWERS", 33, "range"), ("CACHE_DIR", 5, "type"), ("CHUNK_CHARS", 10, "range")],
    "06": [("LOCAL_MODEL", "/no/such/model", "path"), ("PRECISION", "fp8", "enum"), ("TEMPERATURE", 0, "range"),
           ("MAX_NEW_TOKENS", "32", "type"), ("CONFIG", "./no-such-config", "path")],
    "07": [("PRECISIONS", ["int3"], "list element"), ("PRECISIONS", [], "range"), ("BASELINE", "int8", "enum"),
           ("NEW_TOKENS", "many", "type"), ("LOCAL_MODEL", "~/no-such-model", "path")],
    "08": [("K", 0, "range"), ("PRECISION", "int4", "enum"), ("N_QUESTIONS", "3", "type"), ("N_QUESTIONS", 32, "range"),
           ("LOCAL_EMBED_MODEL", "./no-such-embedder", "path")],
    "09": [("N_CASES", 0, "range"), ("N_CASES", 40, "range"), ("N_CASES", 17, "range"), ("MAX_TOKENS", "48", "type"),
           ("LOCAL_URL", "localhost:8000", "enum"), ("LOCAL_MODEL", "/no/such/model", "path")],
    "10": [("CONCURRENCY", 4, "type"), ("CONCURRENCY", [1, 0], "list element"), ("LOAD_REQUESTS", 0, "range"),
           ("HOURLY_USD", -1, "range"), ("LOCAL_MODEL", "/no/such/model", "path")],
}
CASES = [(nb, name, value) for nb, rows in BAD.items() for name, value, _ in rows]


def test_every_notebook_has_bad_values_of_each_kind_it_declares():
    assert set(BAD) == {nb.stem[:2] for nb in BOOKS}
    for nb in BOOKS:
        declared = course._declaration(nb)[1]
        kinds = {kind for _, _, kind in BAD[nb.stem[:2]]}
        assert not any(isinstance(k, ListOf) for k in declared.values()) or "list element" in kinds, nb.stem
        assert not any(isinstance(k, OneOf) for k in declared.values()) or "enum" in kinds, nb.stem
        assert "LOCAL_MODEL" not in declared or "path" in kinds, nb.stem


def _book(prefix: str) -> Path:
    return next(nb for nb in BOOKS if nb.stem.startswith(prefix))


@pytest.mark.parametrize("nb", BOOKS, ids=lambda p: p.stem)
def test_the_notebooks_own_check_cell_passes_its_defaults(nb, monkeypatch):
    for env_name, _, _ in settings.KNOBS.values():
        monkeypatch.delenv(env_name, raising=False)
    monkeypatch.chdir(nb.parent)
    parameters, check_cell = _cells(nb)
    scope: dict = {}
    exec(parameters, scope)  # noqa: S102 — the course's own cells
    exec(check_cell, scope)  # noqa: S102


@pytest.mark.parametrize(("prefix", "name", "value"), CASES, ids=[f"{p}-{n}-{v!r}" for p, n, v in CASES])
def test_the_notebooks_own_check_cell_refuses_it(prefix, name, value, monkeypatch):
    """The parameters cell, papermill's injected value, then the check cell: what a kernel runs, without the kernel."""
    for env_name, _, _ in settings.KNOBS.values():
        monkeypatch.delenv(env_name, raising=False)
    monkeypatch.chdir(_book(prefix).parent)  # papermill runs notebooks from notebooks/
    parameters, check_cell = _cells(_book(prefix))
    scope: dict = {}
    exec(parameters, scope)  # noqa: S102 — the course's own cells
    scope[name] = value
    with pytest.raises(ParameterError) as info:
        exec(check_cell, scope)  # noqa: S102
    assert str(info.value).startswith(name) and "accepts" in str(info.value)


# ---------------------------------------------------------------- through the runner, as a user would
@pytest.mark.parametrize(("prefix", "name", "value"), CASES, ids=[f"{p}-{n}-{v!r}" for p, n, v in CASES])
def test_the_runner_fails_a_bad_value_in_seconds_naming_the_parameter(prefix, name, value, tmp_path, monkeypatch):
    for env_name, _, _ in settings.KNOBS.values():
        monkeypatch.delenv(env_name, raising=False)
    started = time.perf_counter()
    out = course.run_course({name: value}, only=[prefix], out_root=tmp_path / "runs")
    seconds = time.perf_counter() - started
    entry = json.loads((out / "summary.json").read_text())[_book(prefix).stem]
    assert entry["status"] == "failed" and entry["reason"].startswith(f"ParameterError: {name}")
    assert "accepts" in entry["reason"] and seconds < 20 and entry["seconds"] < 20
    assert not (out / _book(prefix).name).exists(), "no kernel was started for a refused value"


@pytest.mark.parametrize("nb", BOOKS, ids=lambda p: p.stem)
def test_the_runner_refuses_a_key_shaped_value_under_any_name(nb, tmp_path):
    name = next(n for n, k in course._declaration(nb)[1].items() if isinstance(k, (Setting, Text, OneOf, ListOf)))
    key = "sk-" + "7f" * 10  # 23 characters: under the 24 the plain key shape needs
    for value in (key, [key]):
        with pytest.raises(ValueError, match=f"Refusing parameter.*{name}") as info:
            course.run_course({name: value}, only=[nb.stem[:2]], out_root=tmp_path / "runs")
        assert key not in str(info.value)
    assert not (tmp_path / "runs").exists(), "nothing written: the summary would hold the key"


@pytest.mark.notebook
def test_a_good_value_is_passed_on_and_the_other_notebooks_still_run(tmp_path):
    books = tmp_path / "nbs"
    books.mkdir()
    for stem, check_cell in (("00_a", "from helpers.course.params import Int, check\ncheck(globals(), N=Int(min=1))"),
                             ("01_b", "from helpers.course import record\nrecord(n=N)")):
        (books / f"{stem}.ipynb").write_text(json.dumps({
            "nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3", "language": "python",
                                                                            "display_name": "Python 3"}},
            "cells": [{"cell_type": "code", "id": "p", "metadata": {"tags": ["parameters"]}, "outputs": [],
                       "execution_count": None, "source": "N = 2  # a count, 1 or more"},
                      {"cell_type": "code", "id": "c", "metadata": {}, "outputs": [], "execution_count": None,
                       "source": check_cell}]}))
    assert course.parameter_problems(books / "00_a.ipynb", {"N": 3}) == []
    out = course.run_course({"N": 0}, out_root=tmp_path / "runs", folder=books)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["00_a"]["status"] == "failed" and "N=0 is below 1" in summary["00_a"]["reason"]
    assert summary["01_b"]["status"] == "ok", "a notebook without a check cell is not checked by the runner"


# ---------------------------------------------------------------- in a real kernel (papermill), before any model loads
@pytest.mark.notebook
@pytest.mark.parametrize(("prefix", "name", "value"), [("06", "LOCAL_MODEL", "/no/such/model"),
                                                       ("10", "CONCURRENCY", 4)])
def test_papermill_stops_at_the_check_cell_within_seconds(prefix, name, value, tmp_path):
    import nbformat
    import papermill as pm

    started = time.perf_counter()
    with pytest.raises(pm.PapermillExecutionError) as info:
        pm.execute_notebook(str(_book(prefix)), str(tmp_path / "out.ipynb"), parameters={name: value},
                            cwd=str(_book(prefix).parent), kernel_name="python3", progress_bar=False)
    seconds = time.perf_counter() - started
    assert info.value.ename == "ParameterError" and info.value.evalue.startswith(name) and seconds < 20
    cells = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells
    failed = next(i for i, c in enumerate(cells) if any(o.get("output_type") == "error" for o in c.get("outputs", [])))
    assert "check(globals()" in cells[failed].source  # it stopped at the check cell …
    assert all(c.get("execution_count") is None for c in cells[failed + 1:] if c.cell_type == "code")  # … nothing after


@pytest.mark.parametrize("nb", BOOKS, ids=lambda p: p.stem)
def test_the_check_cells_are_the_ones_nbbuild_writes(nb):
    """A new notebook built with scripts/nbbuild.py gets the same one-line check cell, declared in knobs.py."""
    import sys

    sys.path.insert(0, str(ROOT))
    from helpers.course.knobs import DECLARED
    from scripts.nbbuild import check_cell

    assert check_cell(nb.stem[:2]).source == _cells(nb)[1]
    assert nb.stem[:2] in DECLARED, f"{nb.stem}: declare its knobs in helpers/course/knobs.py"


@pytest.mark.notebook
def test_what_a_run_could_not_honour_reaches_the_summary_reason(tmp_path):
    """Valid values this machine cannot honour (07: every precision asked for skipped) are said, never quiet."""
    books = tmp_path / "nbs"
    books.mkdir()
    (books / "00_n.ipynb").write_text(json.dumps({
        "nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3", "language": "python",
                                                                        "display_name": "Python 3"}},
        "cells": [{"cell_type": "code", "id": "p", "metadata": {"tags": ["parameters"]}, "outputs": [],
                   "execution_count": None, "source": 'P = ["nf4"]  # precisions'},
                  {"cell_type": "code", "id": "n", "metadata": {}, "outputs": [], "execution_count": None,
                   "source": "from helpers.course import note, record\nnote(f'PRECISIONS {P} not measured: no bnb')\n"
                             "record(x=1)"}]}))
    out = course.run_course({}, out_root=tmp_path / "runs", folder=books)
    entry = json.loads((out / "summary.json").read_text())["00_n"]
    assert entry["status"] == "ok" and entry["reason"] == "note: PRECISIONS ['nf4'] not measured: no bnb"
    assert entry["metrics"]["x"] == 1


ISSUE_EXAMPLES = [  # issue 19's bad values, as typed on the command line
    ("07", "PRECISIONS", '["int3"]'), ("10", "LOAD_REQUESTS", "0"), ("06", "LOCAL_MODEL", "/no/such/model/folder"),
    ("05", "TOP_K", "0"), ("08", "K", "0"), ("01", "TEMPERATURE", "hot"), ("04", "TOOL_CHOICE", "anyy"),
    ("09", "N_CASES", "0"), ("10", "CONCURRENCY", "4"),
    ("02", "N_MESSAGES", "0"), ("05", "CHUNK_CHARS", "0"),  # were named n, size, … (05's METRIC and chunkings: 05a)
]


@pytest.mark.parametrize(("prefix", "name", "text"), ISSUE_EXAMPLES, ids=[f"{p}-{n}" for p, n, _ in ISSUE_EXAMPLES])
def test_the_issues_examples_fail_from_the_command_line_within_seconds(prefix, name, text, tmp_path, monkeypatch):
    for env_name, _, _ in settings.KNOBS.values():
        monkeypatch.delenv(env_name, raising=False)
    started = time.perf_counter()
    assert course.main(["run", "--only", prefix, "-p", name, text, "--out", str(tmp_path)]) == 1
    seconds = time.perf_counter() - started
    summary = json.loads(next(tmp_path.glob("*/summary.json")).read_text())
    entry = summary[_book(prefix).stem]
    assert entry["status"] == "failed" and entry["reason"].startswith(f"ParameterError: {name}=") and seconds < 20
    assert " accepts " in entry["reason"] and "e.g." in entry["reason"]


def test_the_issues_key_under_another_name_is_refused_before_anything_is_written(tmp_path, capsys):
    key = "sk-" + "9b" * 10  # the issue's 23-character key under CHAT_MODEL
    with pytest.raises(SystemExit):
        course.main(["run", "--only", "01", "-p", "CHAT_MODEL", key, "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert "CHAT_MODEL" in err and "environment" in err and key not in err
    assert not (tmp_path / "runs").exists()
