"""Write CONTRIBUTING.md's GPU-twin table from a course run under a twin (`make twin`; tests check the markers exist).

    COURSE_DEVICE=twin:t4 make course ONLY="06 07 08 09 10"
    python scripts/twin_table.py runs/latest t4
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GiB = 2**30


def table(summary: dict, profile: str) -> str:
    """One row per notebook of the run: what was resident at the peak (model, precision), the predicted peak, the
    headroom, and where accelerate's own device-map inference put each float load (all on GPU 0, or not)."""
    rows = [f"| notebook | resident on the {profile.upper()} at the peak | predicted peak | capacity | headroom | "
            "placement (accelerate) |", "|---|---|---|---|---|---|"]
    for name, entry in sorted(summary.items()):
        twin = (entry.get("metrics") or {}).get("gpu_twin")
        if entry.get("status") != "ok" or not twin or twin.get("profile") != profile:
            rows.append(f"| {name} | {entry.get('status')}: {str(entry.get('reason') or 'no twin metrics')[:80]} | | | | |")
            continue
        held = "; ".join(twin["resident_at_peak"]) or "nothing"
        rows.append(f"| {name} | {held} + CUDA context {twin['cuda_context_bytes'] / GiB:.2f} GiB | "
                    f"{twin['peak_bytes'] / GiB:.2f} GiB | {twin['capacity_bytes'] / GiB:.2f} GiB | "
                    f"{(twin['capacity_bytes'] - twin['peak_bytes']) / GiB:.2f} GiB | {_placement(twin)} |")
    return "\n".join(rows)


def _placement(twin: dict) -> str:
    """'all on GPU 0' when accelerate placed every float load whole; the offending load otherwise."""
    placements = twin.get("placements") or []
    if not placements:
        return "no float load (quantized loads: bitsandbytes on GPU 0)"
    return "all on GPU 0" if twin.get("all_on_gpu0") else "; ".join(p for p in placements if "all on GPU 0" not in p)


def main(run: str, profile: str) -> None:
    summary = json.loads((Path(run) / "summary.json").read_text())
    stamp = Path(run).resolve().name
    body = (f"Predicted on the {profile.upper()} twin (not measured), `COURSE_DEVICE=twin:{profile} make course "
            f"ONLY=\"06 07 08 09 10\"`, run {stamp}:\n\n{table(summary, profile)}")
    readme = ROOT / "CONTRIBUTING.md"
    text = readme.read_text()
    mark = f"<!-- TWIN-TABLE-{profile.upper()} -->"
    new, n = re.subn(rf"({re.escape(mark)}\n).*?(\n<!-- /TWIN-TABLE-{profile.upper()} -->)",
                     lambda m: m.group(1) + body + m.group(2), text, flags=re.S)
    if not n:
        raise SystemExit(f"CONTRIBUTING.md has no {mark} … <!-- /TWIN-TABLE-{profile.upper()} --> block")
    readme.write_text(new)
    print(body)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/latest", sys.argv[2] if len(sys.argv) > 2 else "t4")
