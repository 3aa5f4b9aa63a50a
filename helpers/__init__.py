"""Mistral, two paths — the course's helpers, in three parts.

- the lesson modules here at the top, one per topic the notebooks teach;
- `helpers.course`, the machinery that runs and checks the course (the runner, `record`, parameter checks,
  verdicts, the doctor, the GPU ledger and twins, the offline models), reached from the lessons only through
  `helpers.hooks`;
- `helpers.endpoint`, the server that speaks the Mistral API (and its conformance suite), started by `client`.
Importing the package puts the machinery behind `helpers.hooks` (below), so no lesson module imports it.
"""

from .course import install as _install_machinery

_install_machinery()
