"""Notebook hygiene: every notebook is valid, parameterised, output-free, Colab-ready, key-free and on today's SDK."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

FOLDER = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb")) + sorted(FOLDER.glob("deep/*.ipynb"))  # the afternoon, then the deep dives
IDS = [p.relative_to(FOLDER).as_posix() for p in NOTEBOOKS]

KEY_PATTERNS = [
    re.compile(r"MISTRAL_API_KEY\s*=\s*['\"][A-Za-z0-9]{16,}['\"]"),  # a key assigned in code
    re.compile(r"api_key\s*=\s*['\"][A-Za-z0-9]{24,}['\"]"),
    re.compile(r"\bsk-[A-Za-z0-9]{20,}"),  # OpenAI-style secret
    re.compile(r"\bhf_[A-Za-z0-9]{30,}"),  # Hugging Face token
    re.compile(r"Bearer\s+[A-Za-z0-9]{24,}"),
]
LEGACY = [
    (re.compile(r"\bMistralClient\b"), "MistralClient (0.x) → from mistralai.client import Mistral"),
    (re.compile(r"\bclient\.chat\("), "client.chat(...) (0.x) → client.chat.complete(...)"),
    (re.compile(r"mistralai==0\."), "a 0.x pin"),
    (re.compile(r"import\s+ChatMessage|ChatMessage\s*\("), "ChatMessage (0.x) → plain dicts"),
    (re.compile(r"from\s+mistralai\s+import\s+Mistral\b"), "pre-2.0 import → from mistralai.client import Mistral"),
    (re.compile(r"from_pretrained\([^)]*load_in_(8|4)bit\s*=", re.S),
     "from_pretrained(load_in_8bit=) (removed in transformers 5) → quantization_config=BitsAndBytesConfig(...)"),
    (re.compile(r"\btorch_dtype\s*="), "torch_dtype= (deprecated in transformers 5) → dtype="),
    (re.compile(r"\.embeddings\(\s*(model|input)="), "embeddings(input=) (0.x) → embeddings.create(inputs=)"),
]


def load(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_there_are_notebooks():
    assert any(p.name.startswith("00_setup") for p in NOTEBOOKS)
    names = [p.relative_to(FOLDER).as_posix() for p in NOTEBOOKS]
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb|deep/\d\d[a-z]_[a-z0-9_]+\.ipynb", n) for n in names), names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_valid_nbformat4(path):
    nb = load(path)
    assert nb.nbformat == 4
    nbformat.validate(nb)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_exactly_one_parameters_cell(path):
    tagged = [c for c in load(path).cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters'"
    assert tagged[0].cell_type == "code"


def _assigned_names(source: str) -> list[str]:
    return [t.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_papermill_sees_every_parameter(path):
    """papermill skips a line with a second '=' (e.g. in its comment), printing "Unable to parse line"; the
    course runner then drops `-p NAME` for it, because it passes only the parameters papermill declares."""
    import papermill as pm

    cell = next(c for c in load(path).cells if "parameters" in c.get("metadata", {}).get("tags", []))
    assert list(pm.inspect_notebook(str(path)).keys()) == _assigned_names(cell.source), (
        f"{path.name}: papermill cannot parse a parameter line — keep '=' out of its comment"
    )


def test_papermill_parameter_check_can_fail(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('MODE = "auto"  # "auto" = guess', metadata={"tags": ["parameters"]})]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "99_bad.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(AssertionError):
        test_papermill_sees_every_parameter(path)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_outputs_committed(path):
    for i, cell in enumerate(code_cells(load(path))):
        assert cell.get("outputs", []) == [], f"{path.name} cell {i} has outputs: clear them before committing"
        assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_colab_badge_and_colab_only_install(path):
    nb = load(path)
    first_md = next(c for c in nb.cells if c.cell_type == "markdown")
    assert "colab.research.google.com/assets/colab-badge.svg" in first_md.source
    assert f"/blob/main/notebooks/{path.relative_to(FOLDER).as_posix()})" in first_md.source, "the badge must open this notebook"
    # the setup cell installs through helpers/course/colab.py (pip install -e there); nothing else installs
    installs = [c for c in code_cells(nb) if re.search(r"%pip install|!pip install|\"pip\", \"install\"|/helpers/course/colab\.py",
                                                       c.source)]
    assert installs, "needs a setup cell that installs the course in Colab (through helpers/course/colab.py)"
    for cell in installs:
        assert '"google.colab" in sys.modules' in cell.source, "installs must run only in Colab"
    assert code_cells(nb).index(installs[0]) <= 1, "the install cell comes first"
    setup = installs[0].source
    assert "/content/course/helpers/course/colab.py" in setup and len(setup.splitlines()) <= 5, (
        "the setup cell runs helpers/course/colab.py in at most five lines (scripts/nbbuild.py's COLAB_SETUP)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_runs_on_line(path):
    first_md = next(c for c in load(path).cells if c.cell_type == "markdown")
    assert "**Runs on:**" in first_md.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_key_like_strings(path):
    text = path.read_text()
    for pattern in KEY_PATTERNS:
        assert not pattern.search(text), f"{path.name} contains something key-like: {pattern.pattern}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_legacy_sdk_calls_in_code(path):
    for i, cell in enumerate(code_cells(load(path))):
        for pattern, why in LEGACY:
            assert not pattern.search(cell.source), f"{path.name} cell {i}: legacy API {why}"


# a reply's text read straight off `.content` (`choices[0].message.content`, a stream's `delta.content`, a loop's
# `msg.content`): a reasoning model sends a list of chunks there, so the course reads it through content_text
RAW_CONTENT = re.compile(r"\b(?:message|delta|msg)\.content\b")
_CONTENT_TEXT_CALL = re.compile(r"content_text\((?:[^()]|\((?:[^()]|\([^()]*\))*\))*\)")


def raw_content_reads(source: str) -> list[str]:
    """Lines that read a reply's `.content` other than inside a `content_text(...)` call."""
    return [line.strip() for line in source.splitlines()
            if RAW_CONTENT.search(_CONTENT_TEXT_CALL.sub("", line.split("#")[0]))]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_reply_text_is_read_through_content_text(path):
    for i, cell in enumerate(code_cells(load(path))):
        raw = [line for line in raw_content_reads(cell.source) if '"content": msg.content' not in line]
        assert not raw, (f"{path.name} cell {i} reads a reply's .content directly ({raw[0]!r}): a reasoning model "
                         "returns a list of chunks there; read the text with helpers.tools.content_text(message)")


def test_raw_content_check_can_fail():
    assert raw_content_reads("print(r.choices[0].message.content)")
    assert raw_content_reads("text = msg.content.strip()")
    assert not raw_content_reads("print(content_text(r.choices[0].message))")
    assert not raw_content_reads("delta = content_text(chunk.data.choices[0].delta.content)  # msg.content")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_records_for_the_course_summary(path):
    sources = "\n".join(c.source for c in code_cells(load(path)))
    assert "record(" in sources, f"{path.name} must record its numbers with helpers.course.record"


def test_hygiene_catches_what_it_should(tmp_path):
    """The checks above can fail: a notebook with outputs, a key and legacy code trips each of them."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("from mistralai.client import MistralClient\nclient.chat(model='x')")
    cell.outputs = [nbformat.v4.new_output("stream", text="hi")]
    cell.execution_count = 1
    nb.cells = [cell]
    assert any(p.search(cell.source) for p, _ in LEGACY)
    fake = "x" * 32  # built at run time, so no key-like literal sits in the repo
    assert any(p.search(f'api_key = "{fake}"') for p in KEY_PATTERNS)
    path = tmp_path / "99_bad.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(AssertionError):
        test_no_outputs_committed(path)
    with pytest.raises(AssertionError):
        test_exactly_one_parameters_cell(path)


SOURCES = sorted(
    p for folder in ("helpers", "benchmarks", "scripts")
    for p in (Path(__file__).resolve().parent.parent / folder).rglob("*.py")
)


@pytest.mark.parametrize("path", SOURCES, ids=[p.name for p in SOURCES])
def test_no_legacy_apis_in_python_sources(path):
    text = path.read_text()
    for pattern, why in LEGACY:
        if pattern.pattern.startswith(r"\bclient\.chat\("):
            continue  # helpers may name their own objects `client`; only notebooks are checked for this one
        assert not pattern.search(text), f"{path}: legacy API {why}"


def test_legacy_quantization_pattern_targets_only_from_pretrained():
    pattern = next(p for p, why in LEGACY if "from_pretrained(load_in_8bit" in why)
    assert pattern.search('AutoModelForCausalLM.from_pretrained(name, load_in_8bit=True)')
    assert not pattern.search("BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=6.0)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_legacy_code_in_text_is_marked(path):
    """Old SDK code may appear in markdown only inside a side box that says LEGACY and not to run it."""
    for i, cell in enumerate(load(path).cells):
        if cell.cell_type != "markdown":
            continue
        hits = [why for pattern, why in LEGACY if pattern.search(cell.source)]
        if hits:
            assert "LEGACY" in cell.source and "do not run" in cell.source, (
                f"{path.name} cell {i} shows legacy code ({hits[0]}) without a LEGACY / do not run mark"
            )


# The library calls each notebook teaches must appear in its own code cells, where a learner can copy them
# (not only inside helpers): notebook prefix → {call: minimum number of occurrences}.
TAUGHT_CALLS = {
    "01": {"Mistral(": 1, "RetryConfig(": 1, "chat.complete(": 1, "chat.stream(": 1, "chat.parse(": 1},
    "02": {"chat.complete(": 1, "chat.stream(": 1, '"prefix": True': 1},
    "02a": {"chat.complete(": 1, "response_format": 1, "chat.parse(": 1, "logprobs=True": 1},  # deep/02a
    "03": {"chat.complete(": 1},
    "04": {"chat.complete(": 1, "tool_calls": 1},
    "05": {"embeddings.create(": 1, "faiss.Index": 1, ".add(": 1, ".search(": 1, "chat.complete(": 1,
           "faiss.write_index(": 1, "faiss.read_index(": 1},
    "05a": {"bm25s.tokenize(": 2, "bm25s.BM25(": 1, ".retrieve(": 1, "def rrf(": 1, "response_format=": 1},
    "06": {"AutoTokenizer.from_pretrained(": 1, "AutoModelForCausalLM.from_pretrained(": 1,
           "apply_chat_template(": 1, ".generate(": 1, "TextIteratorStreamer": 1, "get_memory_footprint()": 1},
    "07": {"BitsAndBytesConfig(": 2, "AutoModelForCausalLM.from_pretrained(": 1, "quantization_config=": 2},
    "08": {"SentenceTransformer(": 1, ".encode(": 1, "faiss.IndexFlatIP(": 1, "apply_chat_template(": 1, ".generate(": 1},
    "08a": {"bm25s.tokenize(": 2, ".retrieve(": 1, "compile_json_schema(": 1, "LogitsProcessor(": 1, ".generate(": 1},
    "09": {"chat.complete(": 1, "tool_choice=": 1, "apply_chat_template(": 1, "tools=tools": 2,
           "encode_chat_completion(": 1, "compile_json_schema(": 1, "LogitsProcessor(": 1, ".generate(": 1},
    "10": {"Mistral(": 1, "load_test(": 1, "vllm_recipe(": 1},  # the vllm serve command that fits
    "04a": {"chat.complete(": 3, "tool_choice=": 2},  # deep/04a: tool_choice variants, parallel calls
    "09a": {"chat.complete(": 1, "response_format": 1},  # deep/09a: prompt-only vs constrained, measured
    "10a": {"conformance.run_checks(": 1},  # deep/10a: does a server keep the API's contract
}
CHECKS_TITLE = "## What we measured"


def _code(nb) -> str:
    return "\n".join(c.source for c in code_cells(nb))


@pytest.mark.parametrize("prefix", sorted(TAUGHT_CALLS))
def test_notebook_shows_the_library_calls_it_teaches(prefix):
    deep = sorted((NOTEBOOKS[0].parent / "deep").glob("*.ipynb"))  # a deep dive's entry: "02a"
    path = next(p for p in [*NOTEBOOKS, *deep] if p.name.startswith(prefix))
    code = _code(load(path))
    missing = {call: need for call, need in TAUGHT_CALLS[prefix].items() if code.count(call) < need}
    assert not missing, f"{path.name}: these calls must appear in its code cells (at least n times): {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_record_only_in_the_last_section(path):
    cells = load(path).cells
    starts = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith(CHECKS_TITLE)]
    assert len(starts) == 1, f"{path.name}: needs exactly one '{CHECKS_TITLE}' section"
    early = [i for i, c in enumerate(cells[: starts[0]]) if c.cell_type == "code" and "record(" in c.source]
    assert not early, f"{path.name}: record(...) in cells {early}, before the checks section"
    later = [c for c in cells[starts[0]:] if c.cell_type == "code" and "record(" in c.source]
    assert later, f"{path.name}: the checks section records nothing"


def test_taught_calls_check_can_fail(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from helpers import selfhost\nlm = selfhost.load_model('x')")]
    assert _code(nb).count("AutoModelForCausalLM.from_pretrained(") < TAUGHT_CALLS["06"]["AutoModelForCausalLM.from_pretrained("]


def test_every_deep_dive_runs_under_nbval_or_in_a_papermill_test():
    """`make test` leaves to their papermill tests the deep dives the Makefile's PAPERMILL_DEEP names; each of those
    must really be run by a test (by its path, "deep/<name>"), and every other deep dive runs under nbval."""
    root = Path(__file__).resolve().parent.parent
    makefile = (root / "Makefile").read_text()
    listed = re.search(r"^PAPERMILL_DEEP := (.*?)(?<!\\)$", makefile, re.M | re.S)[1].replace("\\\n", " ").split()
    tests = "".join(p.read_text() for p in (root / "tests").glob("test_nb_*.py"))
    deep = {p.stem for p in (root / "notebooks" / "deep").glob("*.ipynb")}
    assert set(listed) <= deep, f"PAPERMILL_DEEP names deep dives that do not exist: {set(listed) - deep}"
    assert [d for d in listed if f'"deep/{d}"' not in tests] == [], "a deep dive left out of nbval needs a papermill test"
