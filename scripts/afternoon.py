"""How long the afternoon takes to read and run, per notebook: markdown words, code lines, plumbing lines, minutes.

    python scripts/afternoon.py                       # the numbered series (the afternoon) and any deep dives
    python scripts/afternoon.py --run runs/latest     # also each notebook's run time from a `make course` run
    python scripts/afternoon.py --readme              # write each notebook's minutes into the README's table

The reading model is the one issue 33 states: about 200 words of markdown a minute and a few seconds (SECONDS_PER_LINE)
for each line of code, plus, with --run, the seconds the notebook took to execute in that run (on that machine).

A code line is a non-blank line of a code cell. A plumbing line is one that is not the lesson:
- every line of the Colab setup cell (the cell that tests `"google.colab" in sys.modules`);
- every line of the parameter-check cell (the one calling `check(globals(), ...)`); the parameters cell itself is the
  notebook's knobs, and counts as code;
- every code line in the last section (from the "What we measured" heading on: `record(...)`, asserts, CI checks);
- elsewhere, a line that judges or records rather than teaches: `tally.check(`, `Verdicts(`, `record(`, `assert `,
  and lines marked `# CI`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORDS_PER_MINUTE = 200
SECONDS_PER_LINE = 4
SETUP_MARK = '"google.colab" in sys.modules'
CHECK_MARK = "check(globals()"
LAST_SECTION = re.compile(r"^#+\s*(\d+\.\s*)?What we measured", re.I | re.M)
PLUMBING_LINE = re.compile(r"tally\.check\(|Verdicts\(|\brecord\(|^\s*assert\b|#\s*CI\b")
WORD = re.compile(r"[A-Za-z0-9][\w'’.-]*")


@dataclass
class Count:
    name: str
    words: int
    code_lines: int
    plumbing_lines: int
    run_s: float | None = None

    @property
    def minutes(self) -> float:
        reading = self.words / WORDS_PER_MINUTE + self.code_lines * SECONDS_PER_LINE / 60
        return reading + (self.run_s or 0) / 60

    @property
    def plumbing_share(self) -> float:
        return self.plumbing_lines / self.code_lines if self.code_lines else 0.0


def markdown_words(text: str) -> int:
    """Words a reader reads: markdown without link targets, image links and HTML tags."""
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", " ", text)  # images (the Colab badge)
    text = re.sub(r"\]\([^)]*\)", "] ", text)  # keep a link's words, drop its address
    text = re.sub(r"<[^>]+>", " ", text)
    return len(WORD.findall(text))


def count(path: Path, run_s: float | None = None) -> Count:
    """Words, code lines and plumbing lines of one notebook (see the module docstring for what is plumbing)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    words = code = plumbing = 0
    in_last = False
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            words += markdown_words(cell.source)
            in_last = in_last or bool(LAST_SECTION.search(cell.source))
            continue
        if cell.cell_type != "code":
            continue
        lines = [line for line in cell.source.splitlines() if line.strip()]
        code += len(lines)
        if in_last or SETUP_MARK in cell.source or CHECK_MARK in cell.source:
            plumbing += len(lines)
        else:
            plumbing += sum(bool(PLUMBING_LINE.search(line)) for line in lines)
    return Count(path.stem, words, code, plumbing, run_s)


def run_seconds(run: Path | None) -> dict[str, float]:
    """Each notebook's seconds in a `make course` run folder (its summary.json), by notebook name."""
    if run is None:
        return {}
    summary = json.loads((run / "summary.json").read_text())  # {notebook: {"status", "seconds", ...}}
    found = {name: float(row["seconds"]) for name, row in summary.items()
             if isinstance(row, dict) and row.get("seconds") is not None}
    return found


def table(counts: list[Count], title: str) -> list[str]:
    out = [f"**{title}**", "", "| notebook | markdown words | code lines | plumbing lines | minutes |", "|---|---:|---:|---:|---:|"]
    for c in counts:
        out.append(f"| {c.name} | {c.words:,} | {c.code_lines} | {c.plumbing_lines} ({c.plumbing_share:.0%}) | "
                   f"{c.minutes:.0f} |")
    words, code, plumb = (sum(getattr(c, f) for c in counts) for f in ("words", "code_lines", "plumbing_lines"))
    minutes = sum(c.minutes for c in counts)
    out.append(f"| **total** | {words:,} | {code} | {plumb} ({plumb / max(code, 1):.0%}) | **{minutes:.0f}** |")
    return out


def readme_with_minutes(readme: str, counts: list[Count]) -> str:
    """The README's NOTEBOOK-TABLE with each notebook's minutes (the fourth column) set from `counts`, and its last
    column naming the notebook's deep dives (notebooks/deep/NNx_*.ipynb among `counts`) with their minutes."""
    minutes = {c.name: f"{c.minutes:.0f}" for c in counts}
    deep = [c for c in counts if re.match(r"\d\d[a-z]_", c.name)]

    def row(line: str) -> str:
        found = re.match(r"\| (\d\d) \| \[([^\]]+)\]", line)
        if not found or found[2] not in minutes:
            return line
        cells = line.split(" | ")
        cells[3] = minutes[found[2]]
        dives = [f"[{d.name[:3]} {d.name[4:].replace('_', ' ')}](notebooks/deep/{d.name}.ipynb), {d.minutes:.0f} min"
                 for d in deep if d.name[:2] == found[1]]
        cells[-1] = f"{'; '.join(dives) or '—'} |"
        return " | ".join(cells)

    start, end = readme.index("<!-- NOTEBOOK-TABLE -->"), readme.index("<!-- /NOTEBOOK-TABLE -->")
    return readme[:start] + "\n".join(row(line) for line in readme[start:end].split("\n")) + readme[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a `make course` run folder (runs/<id>): add each notebook's run time")
    parser.add_argument("--notebooks", type=Path, default=ROOT / "notebooks")
    parser.add_argument("--readme", action="store_true", help="write the minutes into README.md's notebook table")
    args = parser.parse_args(argv)
    seconds = run_seconds(args.run)
    core = sorted(p for p in args.notebooks.glob("[0-9][0-9]_*.ipynb"))
    deep = sorted(p for p in args.notebooks.glob("*/*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not core:
        print(f"no notebooks in {args.notebooks}", file=sys.stderr)
        return 1
    if args.readme:
        readme = ROOT / "README.md"
        readme.write_text(readme_with_minutes(readme.read_text(), [count(p) for p in core + deep]))
    how = (f"≈{WORDS_PER_MINUTE} words a minute, {SECONDS_PER_LINE} s a line of code"
           + (f", plus run time from {args.run}" if args.run else ", run time not counted (give --run)"))
    print("\n".join(table([count(p, seconds.get(p.stem)) for p in core], f"The afternoon ({how})")))
    if deep:
        print()
        print("\n".join(table([count(p, seconds.get(p.stem)) for p in deep], "Deep dives")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
