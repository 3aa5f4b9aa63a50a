"""How much helper code stands behind each notebook: the lines of lesson code a learner would read to follow every
helper name the notebook calls, and everything those definitions call in turn.

    python scripts/lesson_lines.py            # a table per notebook, and the median
    python scripts/lesson_lines.py --json     # the same as JSON
    python scripts/lesson_lines.py --readme   # write the README's list of lesson modules and this median

Lesson code is the modules at the top of `helpers/` (not `helpers/course/`, the course's machinery, nor
`helpers/endpoint/`, the server): what `hooks.py` hands on to those is not counted, as a learner need not read it.
A definition (function, class, constant) counts once with all its lines, wherever it is reached from. Names are
followed through the imports each module declares, at the top or inside a function; a method reached through an
object's attribute is counted with its class. The README's layout section quotes the median.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELPERS = ROOT / "helpers"
NOTEBOOKS = ROOT / "notebooks"


def lesson_modules(helpers: Path = HELPERS) -> dict[str, Path]:
    """The lesson modules by name: helpers/*.py except __init__."""
    return {p.stem: p for p in sorted(helpers.glob("*.py")) if p.stem != "__init__"}


class Module:
    """One lesson module: its top-level definitions (with line spans) and what each one names."""

    def __init__(self, name: str, path: Path, known: set[str]) -> None:
        self.name = name
        tree = ast.parse(path.read_text())
        self.spans: dict[str, int] = {}
        self.nodes: dict[str, ast.AST] = {}
        self.imports: dict[str, tuple[str, str | None]] = {}  # local name -> (module, name or None for a module)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module is None:
                    for a in node.names:
                        if a.name in known:
                            self.imports[a.asname or a.name] = (a.name, None)
                elif node.module.split(".")[0] in known and "." not in node.module:
                    for a in node.names:
                        self.imports[a.asname or a.name] = (node.module, a.name)
        for node in tree.body:
            names: list[str] = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id for t in targets if isinstance(t, ast.Name)]
            for n in names:
                self.spans[n] = node.end_lineno - node.lineno + 1
                self.nodes[n] = node

    def refs(self, name: str) -> set[tuple[str, str]]:
        """The (module, name) pairs a definition refers to, within the lesson modules."""
        out: set[tuple[str, str]] = set()
        for node in ast.walk(self.nodes[name]):
            if isinstance(node, ast.Name):
                out |= self.resolve(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                target = self.imports.get(node.value.id)
                if target and target[1] is None:
                    out.add((target[0], node.attr))
        return out

    def resolve(self, ident: str) -> set[tuple[str, str]]:
        if ident in self.spans:
            return {(self.name, ident)}
        target = self.imports.get(ident)
        if target and target[1] is not None:
            return {(target[0], target[1])}
        return set()


def notebook_names(path: Path, known: set[str]) -> set[tuple[str, str]]:
    """The (module, name) pairs of lesson code a notebook's code cells call or import."""
    code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    found: set[tuple[str, str]] = set()
    aliases: dict[str, str] = {}
    for m in re.finditer(r"^\s*from helpers\.(\w+) import ([\w ,()]+)$", code, re.M):
        if m.group(1) in known:
            found |= {(m.group(1), n.strip().split(" as ")[0]) for n in m.group(2).strip("()").split(",") if n.strip()}
    for m in re.finditer(r"^\s*from helpers import ([\w ,]+)", code, re.M):
        for item in m.group(1).split(","):
            parts = item.strip().split(" as ")
            if parts[0] in known:
                aliases[parts[-1]] = parts[0]
    for alias, module in aliases.items():
        found |= {(module, attr) for attr in re.findall(rf"\b{alias}\.(\w+)", code)}
    return found


def behind(path: Path, modules: dict[str, Module]) -> tuple[int, set[str]]:
    """Lines of lesson code behind a notebook's helper names, and the modules they sit in."""
    todo = [ref for ref in notebook_names(path, set(modules)) if ref[1] in modules[ref[0]].spans]
    seen: set[tuple[str, str]] = set()
    while todo:
        ref = todo.pop()
        if ref in seen or ref[0] not in modules or ref[1] not in modules[ref[0]].spans:
            continue
        seen.add(ref)
        todo.extend(modules[ref[0]].refs(ref[1]))
    return sum(modules[m].spans[n] for m, n in seen), {m for m, _ in seen}


def measure(root: Path = ROOT) -> dict[str, dict[str, object]]:
    paths = lesson_modules(root / "helpers")
    modules = {name: Module(name, p, set(paths)) for name, p in paths.items()}
    out = {}
    for nb in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        lines, mods = behind(nb, modules)
        out[nb.stem] = {"lines": lines, "modules": sorted(mods)}
    return out


def first_line(path: Path) -> str:
    """A module's docstring, first sentence or line: what it does for the learner."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return " ".join(doc.split("\n\n")[0].split()).split(". ")[0].rstrip(".")


def readme_block(root: Path = ROOT) -> str:
    """The README's list of lesson modules (one line each, from their docstrings) and the lines behind a notebook."""
    result = measure(root)
    modules = lesson_modules(root / "helpers")
    total = sum(len(p.read_text().splitlines()) for p in modules.values())
    median = statistics.median(r["lines"] for r in result.values())
    lines = [f"The lesson modules ({len(modules)} files, {total:,} lines; `python scripts/lesson_lines.py`, which also "
             f"counts the lesson code behind each notebook's helper calls: median {median:g} lines, "
             f"{min(r['lines'] for r in result.values()):,}–{max(r['lines'] for r in result.values()):,}):", ""]
    lines += [f"- `{name}.py` — {first_line(path)}" for name, path in modules.items()]
    return "\n".join(lines)


def write_readme(root: Path = ROOT) -> None:
    readme = root / "README.md"
    text = readme.read_text()
    new = re.sub(r"(<!-- LESSON-MODULES -->\n).*?(\n?<!-- /LESSON-MODULES -->)",
                 lambda m: m.group(1) + readme_block(root) + "\n" + m.group(2).lstrip("\n"), text, flags=re.S)
    readme.write_text(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--readme", action="store_true", help="write the README's lesson-module list")
    args = parser.parse_args(argv)
    if args.readme:
        write_readme()
        return 0
    result = measure()
    median = statistics.median(r["lines"] for r in result.values())
    total = sum(len(p.read_text().splitlines()) for p in lesson_modules().values())
    if args.json:
        print(json.dumps({"notebooks": result, "median": median, "lesson_lines": total}, indent=1))
        return 0
    for name, r in result.items():
        print(f"{name:34} {r['lines']:5} lines in {len(r['modules']):2} modules")
    print(f"median {median:g} lines behind a notebook; lesson modules {total:,} lines in {len(lesson_modules())} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
