"""`python -m helpers.course run …`: run the notebooks (see helpers/course/runner.py)."""

from .runner import main

if __name__ == "__main__":
    raise SystemExit(main())
