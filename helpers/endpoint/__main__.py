"""`python -m helpers.endpoint …`: serve a model on the Mistral API (see helpers/endpoint/cli.py)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
