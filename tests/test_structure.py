"""The helpers package stays small and readable: no import cycles, no module a reader loses the thread of,
the endpoint fenced off in its own subpackage, and no notebook reaching into it."""

from __future__ import annotations

import ast
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELPERS = ROOT / "helpers"
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every helpers module this file imports, at the top or inside functions (relative imports resolved)."""
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + (node.module.split(".") if node.module else []))
            if not target.startswith("helpers"):
                continue
            found.update(f"{target}.{a.name}" for a in node.names)  # `from . import x` imports module x
            if node.module or not all((ROOT / target.replace(".", "/") / f"{a.name}.py").exists() for a in node.names):
                found.add(target)  # `from .x import y`, or a name the package itself defines; `from . import x`
                # needs only x (the package is the importer's own parent, already initialised)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("helpers"))
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in HELPERS.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {t for t in imports_of(path) if t in modules and t != name}
        # importing helpers.endpoint.x also runs helpers.endpoint/__init__; count the package as a dependency
        targets |= {".".join(t.split(".")[:i]) for t in targets for i in range(2, len(t.split(".")))
                    if ".".join(t.split(".")[:i]) in modules and not name.startswith(".".join(t.split(".")[:i]))}
        edges[name] = targets
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if state.get(nxt) is None and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if state.get(start) is None and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycles_counting_function_level_imports():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_function_level_imports_are_counted(tmp_path):
    sample = HELPERS / "client.py"
    assert "helpers.endpoint.local" in imports_of(sample)  # imported inside local_url(), not at the top


LESSON_TOTAL_MAX_LINES = 5000
LESSON_MAX_LINES = 400


def lesson_modules() -> dict[str, Path]:
    """The lesson code: the modules at the top of helpers/ (the machinery is helpers/course/, the server helpers/endpoint/)."""
    return {module_name(p): p for p in sorted(HELPERS.glob("*.py")) if p.name != "__init__.py"}


def test_lesson_modules_reach_the_machinery_only_through_hooks_and_the_endpoint_only_through_the_client():
    edges = graph()
    for name in lesson_modules():
        course = {t for t in edges[name] if t == "helpers.course" or t.startswith("helpers.course.")}
        assert not course, f"{name} imports the course's machinery ({course}): ask through helpers.hooks instead"
        endpoint = {t for t in edges[name] if t == "helpers.endpoint" or t.startswith("helpers.endpoint.")}
        assert not endpoint or name == "helpers.client", f"{name} imports the endpoint ({endpoint}): use helpers.client"
    assert "helpers.course" in edges["helpers"], "importing helpers must install the machinery behind helpers.hooks"


def test_the_import_rule_can_fail():
    edges = graph()
    assert "helpers.endpoint.local" in edges["helpers.client"]  # the one door to the endpoint is seen as an import
    assert any(t.startswith("helpers.course") for t in edges["helpers.course.doctor"] | edges["helpers"])


def test_no_lesson_module_mentions_the_twin():
    found = {name: n for name, p in lesson_modules().items()
             if (n := sum("twin" in line.lower() for line in p.read_text().splitlines()))}
    assert not found, f"the GPU twin belongs in helpers/course/gpu.py, not in the lessons: {found}"


def test_each_lesson_module_can_be_read_in_a_sitting():
    long = {name: n for name, p in lesson_modules().items() if (n := len(p.read_text().splitlines())) > LESSON_MAX_LINES}
    assert not long, f"split these lesson modules (over {LESSON_MAX_LINES} lines): {long}"


def test_the_lesson_code_stays_a_small_package():
    """Issue 28: the lesson modules together stay small enough to read (the course's machinery lives in course/)."""
    total = sum(len(p.read_text().splitlines()) for p in lesson_modules().values())
    assert 1000 < total <= LESSON_TOTAL_MAX_LINES, f"the lesson modules total {total:,} lines (at most " \
        f"{LESSON_TOTAL_MAX_LINES:,}): move what runs or checks the course into helpers/course/"


def test_the_lesson_code_behind_a_notebook_stays_small():
    import statistics
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from lesson_lines import measure

    per_notebook = {name: r["lines"] for name, r in measure(ROOT).items()}
    assert len(per_notebook) >= 11 and all(n > 0 for n in per_notebook.values()), per_notebook
    assert statistics.median(per_notebook.values()) <= 1200, per_notebook


def test_no_module_is_too_long_to_follow():
    long = {str(p.relative_to(ROOT)): n for p in HELPERS.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these (over {MAX_LINES} lines): {long}"


def test_the_endpoint_is_its_own_subpackage_and_learner_modules_do_not_depend_on_its_insides():
    edges = graph()
    assert (HELPERS / "endpoint" / "__init__.py").exists()
    assert not (HELPERS / "generation.py").exists() and not (HELPERS / "constrained.py").exists()
    for name, targets in edges.items():
        if name.startswith("helpers.endpoint"):
            continue
        inside = {t for t in targets if t.startswith("helpers.endpoint.")
                  and t not in {"helpers.endpoint.local", "helpers.endpoint.cli", "helpers.endpoint.conformance"}}
        assert not inside, f"{name} reaches into the endpoint's internals: {inside}"


def test_no_notebook_imports_the_endpoint_but_its_conformance_suite():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
        code = code.replace("from helpers.endpoint import conformance", "")  # 10 runs the suite against any server
        assert "helpers.endpoint" not in code and "import endpoint" not in code, path.name


def test_placement_rule_is_written_down():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    assert "one notebook" in text and "several" in text and "endpoint" in text


def test_the_readme_lists_the_lesson_modules_as_they_are(tmp_path):
    import shutil
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from lesson_lines import readme_block

    block = readme_block(ROOT)
    assert block in (ROOT / "README.md").read_text(), "run: python scripts/lesson_lines.py --readme"
    assert all(f"`{p.name}`" in block for p in HELPERS.glob("*.py") if p.name != "__init__.py")
    # a new lesson module changes the block, so a stale README fails the check above
    shutil.copytree(HELPERS, tmp_path / "helpers")
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    (tmp_path / "helpers" / "extra.py").write_text('"""A module the README does not list yet."""\n')
    assert "`extra.py`" in readme_block(tmp_path) and readme_block(tmp_path) != block
