"""Run the whole course with papermill and collect what each notebook measured.

Notebooks call :func:`record` with their key numbers; under ``make course`` those land in
``runs/<timestamp>/metrics/<notebook>.json`` and then in ``summary.json`` / ``summary.md``.
Outside a course run, :func:`record` just shows the "What we measured" table.

    python -m helpers.course run [-p NAME VALUE ...] [--only 01 04] [--out runs]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .measured import headline_table

METRICS_ENV = "COURSE_METRICS_FILE"
QUIET_KERNEL = ["--IPKernelApp.log_level=ERROR"]  # hide ipykernel's start-up warnings from the progress lines
_session: dict[str, Any] = {}


def _jsonable(value: Any) -> Any:
    """Numbers, strings, bools, None, and dicts/lists of them; numpy/torch scalars become Python ones."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _flatten(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_flatten(value, name + "."))
        else:
            rows.append((name, value))
    return rows


def record(source: str | None = None, **metrics: Any):
    """Record this run's numbers for the course summary and show the headline ones as a "What we measured" table.

    `source` says where the numbers come from (e.g. "CPU stand-in, 2026-11-25"); it is stored too. The table shows
    the first metrics given (None left out), in order, one row each (a dict on one line), `measured_on` last, at
    most 8 rows (measured.HEADLINE_ROWS), and names the ones left out; all go to the metrics file. The table it
    returns holds every metric, flattened (`table.loc["verdicts.right", "value"]`)."""
    import pandas as pd

    clean = _jsonable(metrics)
    if source:
        clean["measured_on"] = source
    _session.update(clean)
    path = os.environ.get(METRICS_ENV)
    if path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        existing = json.loads(target.read_text()) if target.exists() else {}
        existing.update(clean)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(existing, indent=2, sort_keys=True))
        os.replace(tmp, target)
    rows = _flatten(clean)
    return headline_table(pd.DataFrame(rows, columns=["metric", "value"]).set_index("metric"), clean)


def recorded_by(notebook: str) -> dict[str, Any]:
    """What another notebook ('09') recorded in this course run (its metrics file beside this run's), or {} when this
    notebook runs alone or that one did not run."""
    path = os.environ.get(METRICS_ENV)
    found = sorted(Path(path).parent.glob(f"{notebook}_*.json")) if path else []
    return json.loads(found[0].read_text()) if found else {}


def note(text: str) -> None:
    """Say what this run did not do that its parameters asked for (e.g. every precision asked for was skipped on this
    machine): printed here, and under `make course` the summary's `reason` carries it even when the status is ok."""
    print(f"note: {text}")
    _session.setdefault("notes", [])
    _session["notes"] = [*_session["notes"], text]
    record(notes=_session["notes"])


def today() -> str:
    """Today's date (UTC) for labelling measurements."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d")


# ---------------------------------------------------------------- the runner
def notebooks_dir() -> Path:
    """The course's notebooks/ folder."""
    return Path(__file__).resolve().parents[2] / "notebooks"


def list_notebooks(only: list[str] | None = None, folder: Path | None = None) -> list[Path]:
    """The afternoon's notebooks in order (NN_topic.ipynb); with `only`, those whose number or name starts with one of
    `only`, deep dives (deep/NNx_topic.ipynb) included: `--only 05` runs 05, `--only 05a` its deep dive."""
    folder = Path(folder) if folder is not None else notebooks_dir()
    every = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    deep = sorted(p for p in (folder / "deep").glob("[0-9][0-9]*_*.ipynb"))
    if not only:
        return every

    def wanted(p: Path) -> bool:
        number = p.name.split("_")[0]
        return any(number == o or (len(o) > len(number) and p.name.startswith(o)) for o in only)

    books = [p for p in every + deep if wanted(p)]
    if not books:
        raise ValueError(f"No notebook matches {only}; have: {[p.name for p in every + deep]}")
    return books


def _requirements_unmet(nb_path: Path) -> str | None:
    """A notebook may declare metadata.course.requires: ["api_key", "gpu"]; say which is missing."""
    from ..settings import cuda_available, find_api_key

    meta = json.loads(nb_path.read_text()).get("metadata", {}).get("course", {})
    for need in meta.get("requires", []):
        if need == "api_key" and find_api_key() is None:
            return "needs MISTRAL_API_KEY"
        if need == "gpu" and not cuda_available():
            return "needs a CUDA GPU"
    return None


def _declared_parameters(nb_path: Path) -> set[str]:
    import papermill as pm

    try:
        return set(pm.inspect_notebook(str(nb_path)).keys())
    except Exception:
        return set()


def _assigned_in_parameters_cell(nb_path: Path) -> set[str]:
    """Every name the `parameters` cell assigns, read with Python's own parser (papermill's parser skips some)."""
    import ast

    cells = json.loads(nb_path.read_text()).get("cells", [])
    for cell in cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            try:
                tree = ast.parse("".join(cell.get("source", [])))
            except SyntaxError:
                return set()
            return {t.id for node in tree.body if isinstance(node, ast.Assign)
                    for t in node.targets if isinstance(t, ast.Name)}
    return set()


def check_parameters(params: dict[str, Any], books: list[Path]) -> dict[Path, set[str]]:
    """What each notebook declares; refuses a parameter that no selected notebook would receive (it would be
    silently ignored), naming the notebooks whose parameters cell papermill cannot parse for it."""
    declared = {nb: _declared_parameters(nb) for nb in books}
    known = set().union(*declared.values()) if declared else set()
    unknown = sorted(set(params) - known)
    if unknown:
        lines = []
        for name in unknown:
            hidden = [nb.stem for nb in books if name in _assigned_in_parameters_cell(nb) - declared[nb]]
            lines.append(f"{name}: papermill cannot parse its line in {', '.join(hidden)} (fix that line's comment)"
                         if hidden else f"{name}: no selected notebook declares it")
        raise ValueError("Parameter(s) that no selected notebook would receive — " + "; ".join(lines) +
                         f". Declared by the selected notebooks: {', '.join(sorted(known)) or 'none'}.")
    return declared


def _declaration(nb_path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The parameters cell's literal values, and the declaration in the notebook's check cell (the first code cell
    after `parameters`: `check(globals(), "05")`, whose kinds are in helpers/course/knobs.py, or
    `check(globals(), TOP_K=Int(min=1), …)`), or None where there is no check cell."""
    import ast

    from . import params as kinds

    cells = json.loads(nb_path.read_text()).get("cells", [])
    at = next((i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if at is None:
        return {}, None
    defaults = kinds.literal_assignments("".join(cells[at].get("source", [])))
    after = next(("".join(c.get("source", [])) for c in cells[at + 1:] if c.get("cell_type") == "code"), "")
    for node in ast.walk(ast.parse(after)):
        if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "check"
                and node.args and getattr(getattr(node.args[0], "func", None), "id", "") == "globals"):
            # the same expressions the kernel runs, evaluated with nothing but the declaration kinds in scope
            scope = {"__builtins__": {}, **kinds.KINDS}
            declared = {}
            if len(node.args) > 1 and isinstance(node.args[1], ast.Constant):  # check(globals(), "05"): knobs.py
                from .knobs import DECLARED
                from .knobs import declared as knobs_for

                declared = knobs_for(node.args[1].value, defaults) if node.args[1].value in DECLARED else {}
            return defaults, {**declared, **{kw.arg: eval(compile(ast.Expression(kw.value), str(nb_path), "eval"),  # noqa: S307
                                                          scope) for kw in node.keywords if kw.arg}}
    return defaults, None


def parameter_problems(nb_path: Path, given: dict[str, Any]) -> list[str]:
    """What the notebook's check cell would refuse in these `-p` values (its own defaults for the rest), in the same
    words, found without starting a kernel: a bad value fails the notebook in well under a second."""
    from .params import problems

    if not given:
        return []
    try:
        defaults, declared = _declaration(nb_path)
    except Exception as exc:  # a declaration the runner cannot read: the notebook's own check cell still runs
        print(f"note: {nb_path.stem}: could not read its check cell ({type(exc).__name__}: {exc})")
        return []
    if not declared:
        return []
    return problems({**defaults, **given}, declared, defaults, cwd=nb_path.parent)


def _write_summary(out: Path, summary: dict[str, Any], params: dict[str, Any]) -> None:
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=False))
    lines = [
        "# Course run summary",
        "",
        f"Run at {out.name} (UTC) · parameters asked for: {params or 'none (defaults)'} · "
        f"python {sys.version.split()[0]}",
        "",
        "| notebook | status | seconds | parameters received | reason | metrics |",
        "|---|---|---:|---|---|---|",
    ]
    for name, entry in summary.items():
        metrics = ", ".join(f"{k}={v}" for k, v in _flatten(entry["metrics"]))
        if len(metrics) > 400:
            metrics = metrics[:400] + " …"
        received = ", ".join(f"{k}={v!r}" for k, v in entry.get("parameters", {}).items()) or "—"
        lines.append(f"| {name} | {entry['status']} | {entry['seconds']:.1f} | {received} | "
                     f"{entry['reason'] or ''} | {metrics} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def run_course(
    params: dict[str, Any] | None = None,
    only: list[str] | None = None,
    out_root: Path | str = "runs",
    kernel: str = "python3",
    timeout_s: int = 1800,
    folder: Path | None = None,
    warm: bool = True,
) -> Path:
    """Execute every notebook in order with papermill; write executed copies and the summary. Returns the run folder.

    With `warm`, each notebook's kernel is started, and given its imports, while the one before runs
    (`helpers.course.warmkernel`): a notebook's seconds then leave out its kernel start and imports."""
    import papermill as pm

    from .warmkernel import WarmKernel

    params = dict(params or {})
    refuse_secret_parameters(params)
    books = list_notebooks(only, folder)
    declared = check_parameters(params, books)
    out_root = Path(out_root)
    out = _new_run_folder(out_root)
    (out / "metrics").mkdir()
    latest = out_root / "latest"
    if latest.is_symlink():
        latest.unlink()
    if not latest.exists():  # never delete a real file or folder someone named "latest"
        latest.symlink_to(out.name, target_is_directory=True)
    else:
        print(f"note: {latest} exists and is not a link; leaving it alone (this run is in {out})")

    # every notebook's -p values checked against its declaration before the first kernel starts
    refused = {nb: parameter_problems(nb, {k: v for k, v in params.items() if k in declared[nb]}) for nb in books}
    for nb, found in refused.items():
        for problem in found:
            print(f"{nb.stem}: {problem}", flush=True)
    summary: dict[str, Any] = {}
    env_before = dict(os.environ)
    os.environ["COURSE_UNATTENDED"] = "1"
    # kernels' OpenMP threads sleep while they wait rather than spin, as the Makefile sets: on a CPU shared with other
    # work a spinning thread stalls every parallel op (benchmarks/bench_decode.py --omp measures it)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    failures = 0
    unmet = {nb: None if refused[nb] else _requirements_unmet(nb) for nb in books}  # a wrong value is wrong anywhere
    warmed: dict[Path, WarmKernel] = {}

    def warm_up(nb: Path) -> None:  # the kernel of a notebook that will run, started now in the background
        if warm and not refused[nb] and not unmet[nb]:
            env = {**os.environ, METRICS_ENV: str((out / "metrics" / f"{nb.stem}.json").resolve())}
            warmed[nb] = WarmKernel(nb, kernel, nb.parent, env, QUIET_KERNEL)

    try:
        for i, nb in enumerate(books, 1):
            name = nb.stem
            print(f"[{i}/{len(books)}] {name} …", flush=True)
            started = time.perf_counter()
            metrics_file = out / "metrics" / f"{name}.json"
            os.environ[METRICS_ENV] = str(metrics_file.resolve())
            if i < len(books):
                warm_up(books[i])
            nb_params = {k: v for k, v in params.items() if k in declared[nb]}
            reason = unmet[nb]
            status = "skipped" if reason else "ok"
            if refused[nb]:
                status, reason = "failed", "ParameterError: " + " ".join(refused[nb])
                failures += 1
            elif not reason:
                ready = warmed.get(nb)
                km = ready.take() if ready is not None else None  # None: warming failed, papermill starts one
                try:
                    pm.execute_notebook(
                        str(nb),
                        str(out / nb.name),
                        parameters=nb_params,
                        cwd=str(nb.parent),
                        kernel_name=kernel,
                        progress_bar=False,
                        execution_timeout=timeout_s,
                        extra_arguments=QUIET_KERNEL,
                        **({"km": km} if km is not None else {}),
                    )
                except Exception as exc:  # papermill raises PapermillExecutionError with the cell's error
                    status = "failed"
                    reason = _short_error(exc)
                    failures += 1
                finally:
                    if ready is not None:
                        ready.close()
            seconds = time.perf_counter() - started
            metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
            if status == "ok" and metrics.get("notes"):  # valid values this run could not honour: said, not hidden
                reason = "note: " + "; ".join(map(str, metrics["notes"]))
            summary[name] = {"status": status, "seconds": round(seconds, 2), "reason": reason,
                             "parameters": nb_params if status != "skipped" else {}, "metrics": metrics}
            print(f"    {status} in {seconds:.1f}s" + (f" — {reason}" if reason else ""), flush=True)
            _write_summary(out, summary, params)
    finally:
        for kernel_left in warmed.values():  # a run stopped early: no warmed kernel outlives it
            kernel_left.close()
        os.environ.clear()
        os.environ.update(env_before)
    print(f"Summary: {out / 'summary.md'} ({failures} failed)")
    return out


def refuse_secret_parameters(params: dict[str, Any]) -> None:
    """Keys never travel as papermill parameters: papermill writes parameters into every executed notebook."""
    from .keyguard import SECRET_NAME
    from .params import key_shaped

    bad = sorted(name for name, value in params.items() if SECRET_NAME.search(name) or key_shaped(value))
    if bad:
        raise ValueError(
            f"Refusing parameter(s) {', '.join(bad)}: papermill would write the value into the executed notebooks "
            "and the summary. Put secrets in the environment instead, e.g. MISTRAL_API_KEY=… make course."
        )


def _new_run_folder(out_root: Path) -> Path:
    """runs/<UTC timestamp>, with a suffix if that second is taken: two runs never share (or clobber) a folder."""
    out_root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for n in range(1000):
        candidate = out_root / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"Could not create a new run folder in {out_root}")


def _short_error(exc: Exception) -> str:
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    text = " ".join(f"{ename}: {evalue}".split())  # one line: the summary is a markdown table
    return text if len(text) < 300 else text[:300] + " …"


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> int:
    """Command line: `python -m helpers.course run -p BACKEND local --only 00 01`."""
    parser = argparse.ArgumentParser(prog="python -m helpers.course", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="execute the notebooks with papermill and write runs/<timestamp>/")
    run.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                     help="a papermill parameter for every notebook that declares it (repeatable)")
    run.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 00 05")
    run.add_argument("--out", default="runs", help="where run folders go (default: runs/)")
    run.add_argument("--kernel", default="python3")
    run.add_argument("--cold", action="store_true",
                     help="start each notebook's kernel when it begins, not while the one before runs")
    args = parser.parse_args(argv)
    params = {name: _parse_value(value) for name, value in args.param}
    try:
        out = run_course(params, args.only, args.out, args.kernel, warm=not args.cold)
    except ValueError as exc:
        parser.error(str(exc))
    summary = json.loads((out / "summary.json").read_text())
    return 1 if any(e["status"] == "failed" for e in summary.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
