"""The course endpoint: a local HTTP server that speaks the Mistral API, so the unmodified SDK can talk to a
self-hosted model. No notebook needs to read this package; `helpers.client.get_client` starts it when needed.

- :mod:`.schemas`  what it accepts and answers (API names, request models, body checks, error bodies)
- :mod:`.gate`     size limit (413), bearer key (401) and rate limit (429), before the app
- :mod:`.app`      the FastAPI routes, in the API's schema and status codes
- :mod:`.worker`   one thread owns the model and batches its FIFO queue's requests; embeddings under their own lock
- :mod:`.batching` continuous batching: concurrent requests share decoding steps, each with its own grammar
- :mod:`.prompts`  request types and message normalisation; :mod:`.engine` renders, decodes and parses
- :mod:`.constrained`  xgrammar grammars for forced tool calls and JSON output
- :mod:`.local`    run it in this process (`LocalServer`, `ensure_server`); :mod:`.cli` on the command line
"""

from .app import ServedModels, create_app, public_name
from .cli import is_loopback_host, main
from .engine import ChatEngine
from .gate import RateLimiter
from .local import LocalServer, ensure_server, load_engine, running_engine, running_worker
from .prompts import Completion, Prompt, PromptError, SamplingParams
from .schemas import API_KEY_ENV

__all__ = ["API_KEY_ENV", "ChatEngine", "Completion", "LocalServer", "Prompt", "PromptError", "RateLimiter",
           "SamplingParams", "ServedModels", "create_app", "ensure_server", "is_loopback_host", "load_engine", "main",
           "public_name", "running_engine", "running_worker"]
