"""`python -m helpers.server …`: the course endpoint's command line (it lives in helpers/endpoint/cli.py)."""

from .endpoint.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
