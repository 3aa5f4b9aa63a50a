"""Regenerate docs/parameters.md's parameter table from helpers.settings.KNOBS (tests check they agree)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from helpers.hooks import device_help  # noqa: E402
from helpers.settings import API_URL_ENV, KEY_ENV, KNOBS, LOCAL_KEY_ENV  # noqa: E402


def params_table() -> str:
    rows = ["| parameter | environment variable | default | what it sets |", "|---|---|---|---|"]
    for name, (env, default, what) in KNOBS.items():
        what = f"{what}: {device_help()}" if name == "DEVICE" else what
        rows.append(f"| `{name}` | `{env}` | {f'`{default}`' if default else '(none)'} | {what} |")
    rows.append(f"| — | `{KEY_ENV}` | (none) | your La Plateforme key (or a Colab secret of that name); never a parameter |")
    rows.append(f"| — | `{LOCAL_KEY_ENV}` | (none) | bearer token for an external `LOCAL_URL` server started with an API key |")
    rows.append(f"| — | `{API_URL_ENV}` | (none: api.mistral.ai) | where `BACKEND=mistral` sends its calls instead of La "
                "Plateforme: the course's tests point it at the free-tier twin (`--platform-tier free`); its answers are "
                "labelled as the twin's |")
    return "\n".join(rows)


def main() -> None:
    readme = ROOT / "docs" / "parameters.md"
    text = readme.read_text()
    new = re.sub(r"(<!-- PARAMS-TABLE -->\n).*?(\n<!-- /PARAMS-TABLE -->)",
                 lambda m: m.group(1) + params_table() + m.group(2), text, flags=re.S)
    readme.write_text(new)


if __name__ == "__main__":
    main()
