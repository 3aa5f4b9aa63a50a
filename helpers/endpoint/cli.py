"""`python -m helpers.endpoint` (or `python -m helpers.endpoint.cli`): serve a model with the Mistral API until Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from .batching import MAX_BATCH
from .local import LocalServer, load_engine
from .prompts import PromptError
from .schemas import API_KEY_ENV, DEFAULT_MAX_BODY, DEFAULT_MAX_TOKENS


def is_loopback_host(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    text = host.strip("[]").lower()
    if text == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    """`python -m helpers.endpoint --model standin`: serve a model with the Mistral API until Ctrl-C."""
    from ..selfhost import PRECISIONS
    from ..settings import DEFAULT_LOCAL_EMBED_MODEL

    parser = argparse.ArgumentParser(
        prog="python -m helpers.endpoint",
        description="Serve a local model with the Mistral chat/embeddings API, for the unmodified mistralai SDK "
                    "(Mistral(api_key=..., server_url='http://127.0.0.1:PORT')).")
    parser.add_argument("--model", required=True,
                        help="'standin' (offline random stand-in), a hub id (e.g. mistralai/Mistral-7B-Instruct-v0.3) "
                             "or a local folder")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS, help="weights precision (default: auto)")
    parser.add_argument("--embedding-model", default=DEFAULT_LOCAL_EMBED_MODEL,
                        help=f"sentence-transformers model for /v1/embeddings (default: {DEFAULT_LOCAL_EMBED_MODEL})")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps, or a GPU twin such as twin:t4 "
                        "(decide and account as on that GPU, compute on the CPU; default: auto)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 = any free port)")
    parser.add_argument("--api-key", default=None,
                        help=f"require 'Authorization: Bearer TOKEN' on every request. Prefer the environment variable "
                             f"{API_KEY_ENV}=TOKEN: a value given here shows in `ps` and in your shell history "
                             "(the flag wins when both are set)")
    parser.add_argument("--max-rps", type=float, default=None, help="rate limit in requests/s; above it: 429")
    parser.add_argument("--platform-tier", default=None, metavar="TIER",
                        help="answer as La Plateforme does for a key of this tier (e.g. free: the models it may call, "
                             "its rate limit, a bearer key required), from data/platform_tiers.json; the answers "
                             "stay this server's model's")
    parser.add_argument("--max-body-mb", type=float, default=DEFAULT_MAX_BODY / 2**20,
                        help="reject request bodies larger than this with 413 (default: 4)")
    parser.add_argument("--default-max-tokens", type=int, default=DEFAULT_MAX_TOKENS,
                        help=f"max_tokens when a request gives none (default: {DEFAULT_MAX_TOKENS})")
    parser.add_argument("--max-batch", type=int, default=MAX_BATCH,
                        help=f"concurrent requests decoded together (default: {MAX_BATCH}; 1 = one at a time)")
    parser.add_argument("--log-prompts", action="store_true", help="include prompt text in the request log lines")
    parser.add_argument("--insecure-public", action="store_true",
                        help="allow a non-loopback --host without --api-key (anyone who can reach the port can use "
                             "the model); without this flag the server refuses to start that way")
    args = parser.parse_args(argv)
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    if not is_loopback_host(args.host) and api_key is None and not args.insecure_public:
        print(f"error: --host {args.host} would serve the model to your network with no key. Set {API_KEY_ENV}=TOKEN "
              "(or --api-key), bind 127.0.0.1, or pass --insecure-public if you really mean it.", file=sys.stderr)
        return 2

    if args.platform_tier:
        from ..course.platform import tier as tier_rules

        try:
            tier_rules(args.platform_tier)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from ..selfhost import ModelLoadError
    from ..settings import SettingsError

    try:
        engine = load_engine(args.model, args.precision, args.device, args.max_batch)
    except (ModelLoadError, SettingsError, PromptError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if getattr(engine.loaded, "is_standin", False):
        from ..labels import STANDIN_BANNER as BANNER

        print(BANNER, file=sys.stderr)
    server = LocalServer(args.model, embed_model=args.embedding_model, device=args.device, host=args.host,
                         port=args.port, api_key=api_key, max_rps=args.max_rps, log_prompts=args.log_prompts,
                         engine=engine, max_body=int(args.max_body_mb * 2**20),
                         default_max_tokens=args.default_max_tokens, max_batch=args.max_batch,
                         platform_tier=args.platform_tier)
    try:
        url = server.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    # the token itself is never printed or logged: say only whether one is required
    key_hint = "<the server's key>" if api_key else "any"
    auth = "a bearer key is required" if api_key or args.platform_tier else "no key required"
    if args.platform_tier:
        auth += f"; as La Plateforme's {args.platform_tier} tier (the answers are this server's model's)"
    print(f"Serving {args.model} ({engine.renderer}) and {args.embedding_model} at {url} ({auth})\n"
          f"  SDK: Mistral(api_key='{key_hint}', server_url='{url}')\n"
          f"  Ctrl-C to stop.", file=sys.stderr)
    try:
        while server._thread is not None and server._thread.is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
