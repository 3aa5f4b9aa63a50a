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
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # `from . import x` imports module x
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
                  and t not in {"helpers.endpoint.local", "helpers.endpoint.cli"}}
        assert not inside, f"{name} reaches into the endpoint's internals: {inside}"


def test_no_notebook_imports_the_endpoint():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
        assert "helpers.endpoint" not in code and "helpers.server" not in code and "import endpoint" not in code, path.name


def test_placement_rule_is_written_down():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    assert "one notebook" in text and "several" in text and "endpoint" in text
