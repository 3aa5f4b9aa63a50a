"""Save every figure of an executed course run as PNG files, to look at them (figures are checked by eye).

    python scripts/figures.py [runs/latest] [runs/latest/figures]

Writes <notebook>-<cell>-<n>.png for each image/png output and prints the list.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import nbformat


def figures(notebook: Path) -> list[tuple[int, bytes]]:
    """(cell index, PNG bytes) for every image/png output of an executed notebook, in order."""
    nb = nbformat.read(notebook, as_version=4)
    found = []
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png:
                found.append((i, base64.b64decode(png)))
    return found


def main(argv: list[str]) -> int:
    run = Path(argv[0]) if argv else Path("runs/latest")
    out = Path(argv[1]) if len(argv) > 1 else run / "figures"
    out.mkdir(parents=True, exist_ok=True)
    for notebook in sorted(run.glob("[0-9][0-9]_*.ipynb")):
        for n, (cell, png) in enumerate(figures(notebook), 1):
            path = out / f"{notebook.stem}-cell{cell}-{n}.png"
            path.write_bytes(png)
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
