"""Keep keys out of executed notebooks: papermill writes every parameter into the notebook it saves, so a parameter
that is named like a secret or shaped like a key stops the run (every notebook's parameter check calls this).
"""

from __future__ import annotations

import re

from ..keys import KEY_ENV, SettingsError

# a parameter name that holds a secret (MISTRAL_API_KEY, HF_TOKEN…), but not MAX_TOKENS or NEW_TOKENS
SECRET_NAME = re.compile(r"API_?KEY|(^|_)KEY$|(^|_)TOKEN$|SECRET|PASSWORD|PASSWD", re.I)


_KEY_LIKE = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9_-]{24,}$"  # 32 alphanumerics; a known prefix from 8 on
                       r"|^((sk|pk|rk|hf|gh[pos]|glpat|xox[abprs])[-_]|AKIA)(?=.*\d)[A-Za-z0-9_-]{8,}$")


def looks_like_key(value: object) -> bool:
    """True for a string shaped like an API key or token: 24+ letters and digits, or a known key prefix (sk-, hf_…)."""
    return isinstance(value, str) and bool(_KEY_LIKE.match(value.strip().strip("'\"")))


def refuse_injected_secrets() -> None:
    """Stop a notebook whose papermill parameters carry a key: papermill writes them into the output notebook.

    Papermill injects its parameters as a cell starting with ``# Parameters``; this reads that cell from the
    kernel's input history (outside a kernel it does nothing) and refuses secret-named or key-shaped values.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    for source in (shell.user_ns.get("In", []) if shell is not None else []) or []:
        if not isinstance(source, str) or not source.lstrip().startswith("# Parameters"):
            continue
        for line in source.splitlines():
            found = re.match(r"\s*([A-Za-z_]\w*)\s*=\s*(.+?)\s*$", line)
            if found and (SECRET_NAME.search(found.group(1)) or looks_like_key(found.group(2))):
                raise SettingsError(
                    f"The notebook parameter {found.group(1)} looks like a secret. Papermill writes every parameter "
                    "into the executed notebook, so the key would be saved in it: delete that output file, then "
                    f"pass keys through the environment instead (e.g. {KEY_ENV}=… papermill …, or "
                    f"{KEY_ENV}=… make course), or through Colab secrets."
                )
