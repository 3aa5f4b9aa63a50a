"""The next notebook's kernel, started and given its imports while the current notebook runs (`make course`).

A notebook's first seconds are a kernel start and its imports (torch, transformers, the SDK, the endpoint's
libraries: about 5 s here), on one core; on a 2-core machine the other core sits idle then, and most notebooks
later leave one idle too (HTTP, Python, a single request). `WarmKernel` starts the next notebook's kernel in a
background thread and imports there what that notebook imports (read from its code cells) plus what the course
endpoint loads, so the next notebook starts with its modules in memory. Nothing else runs early: no cell, no
model load, no parameter. The warm-up is silent and kept out of the kernel's history, so execution counts and
outputs are those of a cold kernel; a warm-up that fails leaves papermill to start the kernel as usual.
"""

from __future__ import annotations

import ast
import logging
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# what a local-backend notebook's endpoint imports when it starts (lazily, inside helpers), and the plotting stack
ENDPOINT_MODULES = (
    "torch", "transformers", "transformers.models.llama.modeling_llama", "mistral_common.protocol.instruct.validator",
    "xgrammar", "fastapi", "uvicorn", "mistralai.client", "pandas", "matplotlib.pyplot", "helpers.client",
    "helpers.endpoint",
)


def imported_modules(notebook: Path) -> list[str]:
    """Every module a notebook's code cells import at top level (`import a.b`, `from a.b import c`), in order."""
    import nbformat

    found: list[str] = []
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:  # a cell with IPython magics: skip it
            continue
        for node in tree.body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                     else [])
            found += [n for n in names if n not in found]
    return found


def warm_code(modules: list[str]) -> str:
    """Python that imports each module, skipping any that fails (the notebook will then fail on it, visibly)."""
    return ("import importlib\n"
            f"for _m in {modules!r}:\n"
            "    try:\n"
            "        importlib.import_module(_m)\n"
            "    except Exception:\n"
            "        pass\n"
            "del _m, importlib\n")


class WarmKernel:
    """A kernel for `notebook`, started with `env` in `cwd`, warming up in a background thread; `take()` waits."""

    def __init__(self, notebook: Path, kernel_name: str, cwd: Path, env: dict[str, str], extra_arguments: list[str],
                 timeout_s: float = 120.0) -> None:
        self.notebook = notebook
        self.km: Any = None
        modules = list(dict.fromkeys([*ENDPOINT_MODULES, *imported_modules(notebook)]))
        self._thread = threading.Thread(target=self._start, name=f"warm-{notebook.stem}", daemon=True,
                                        args=(kernel_name, cwd, env, extra_arguments, warm_code(modules), timeout_s))
        self._thread.start()

    def _start(self, kernel_name, cwd, env, extra_arguments, code, timeout_s) -> None:
        from jupyter_client.manager import KernelManager

        km = KernelManager(kernel_name=kernel_name)
        try:
            km.start_kernel(cwd=str(cwd), env=env, extra_arguments=extra_arguments)
            kc = km.blocking_client()
            kc.start_channels()
            try:
                kc.wait_for_ready(timeout=timeout_s)
                reply = kc.execute_interactive(code, silent=True, store_history=False, timeout=timeout_s)
                if reply["content"].get("status") != "ok":
                    raise RuntimeError(f"warm-up failed: {reply['content'].get('evalue')}")
            finally:
                kc.stop_channels()
            self.km = km
        except Exception as exc:
            log.warning("could not warm a kernel for %s (%s: %s); papermill starts one instead", self.notebook.name,
                        type(exc).__name__, exc)
            try:
                km.shutdown_kernel(now=True)
            except Exception:
                pass

    def take(self) -> Any:
        """The started kernel's manager (for papermill's `km=`), or None when warming failed: wait for it."""
        self._thread.join()
        return self.km

    def close(self) -> None:
        """Shut the kernel down (papermill leaves a kernel it did not start running)."""
        self._thread.join()
        if self.km is not None:
            try:
                self.km.shutdown_kernel(now=True)
            except Exception:
                pass
            self.km = None
