"""Where `make test`'s time goes: a markdown table by kind of test, from the JUnit XML that `make test` writes.

    make test                                  # writes runs/test-times.xml
    python scripts/test_times.py runs/test-times.xml [--wall SECONDS]

Each test's time is its own (setup + call + teardown, as pytest measures it). Under pytest-xdist the two workers run
tests side by side, so the kinds add up to more than the wall time; `--wall` (the run's elapsed seconds) puts the
two side by side.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

KINDS = {  # test module (or notebook) → what it is, in the order the table shows them
    "unit": "unit tests of helpers (incl. the endpoint, in-process)",
    "hygiene": "notebook hygiene (structure, parameters, verdicts, links)",
    "nbval": "nbval: every notebook once, default parameters",
    "papermill": "papermill variants: other parameters (00-06)",
    "twin": "06-10 under the T4 twin (papermill)",
    "platform": "with a free-tier key: 00-05, 08, 10 against the La Plateforme twin (papermill)",
}
CELLS_ONLY = {"test_nb_api_fields"}  # runs a notebook's cells against a fake client in-process: no papermill, a unit test
HYGIENE = {"test_hygiene", "test_verdict_hygiene", "test_params", "test_links", "test_structure", "test_publish",
           "test_packaging"}


def kind_of(classname: str) -> str:
    """Which row a test case belongs to, from its JUnit classname ("tests.test_gpu", "notebooks.05_api_rag.ipynb")."""
    if classname.startswith("notebooks.") or classname.endswith(".ipynb"):
        return "nbval"
    module = classname.split(".")[1] if classname.startswith("tests.") else classname.split(".")[0]
    if module == "test_nb_twin":
        return "twin"
    if module.startswith("test_nb_platform"):
        return "platform"
    if module.startswith("test_nb_") and module not in CELLS_ONLY:
        return "papermill"
    if module in HYGIENE:
        return "hygiene"
    return "unit"


def totals(xml_path: Path) -> tuple[dict[str, float], dict[str, int]]:
    """Seconds and test counts per kind."""
    seconds: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        kind = kind_of(case.get("classname", ""))
        seconds[kind] += float(case.get("time") or 0)
        count[kind] += 1
    return seconds, count


def table(xml_path: Path, wall: float | None = None) -> str:
    seconds, count = totals(xml_path)
    total = sum(seconds.values())
    rows = ["| part of `make test` | tests | seconds | share |", "|---|---|---|---|"]
    for kind, label in KINDS.items():
        if count.get(kind):
            rows.append(f"| {label} | {count[kind]} | {seconds[kind]:.0f} | {seconds[kind] / total:.0%} |")
    rows.append(f"| **all tests, summed** | {sum(count.values())} | **{total:.0f}** | |")
    if wall:
        rows.append(f"| wall time of the pytest run (2 workers side by side) | | {wall:.0f} | |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("xml", type=Path)
    parser.add_argument("--wall", type=float, default=None, help="the pytest run's elapsed seconds")
    args = parser.parse_args(argv)
    if not args.xml.exists():
        print(f"{args.xml}: no such file — run `make test` first (it writes runs/test-times.xml)", file=sys.stderr)
        return 2
    print(table(args.xml, args.wall))
    return 0


if __name__ == "__main__":
    sys.exit(main())
