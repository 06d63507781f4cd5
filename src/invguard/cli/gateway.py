"""Command line of the gateway: ``invguard serve`` and ``invguard gateway hash-key``/``init``.

``add_serve_parser(sub)`` registers both on the top-level sub-parsers of ``invguard``; each sets
``handler=<fn(args) -> int>``. Errors a user can fix raise :class:`~invguard.errors.InvGuardError`
(one line, exit 2, printed by ``invguard.cli.main``). ``gateway_main`` is
``python -m invguard.gateway``.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from invguard.cli._common import EXIT_OK, EXIT_USAGE, SubParsers
from invguard.errors import InvalidParameterError, InvGuardError

# Function-level imports below are for laziness: parsers are built without the gateway's modules.

MIN_KEY_CHARS = 16


def add_serve_parser(sub: SubParsers) -> None:
    """Register ``serve`` and ``gateway`` (with ``hash-key``) on ``sub`` (argparse sub-parsers)."""
    p = sub.add_parser(
        "serve",
        help="run the prediction gateway: API keys, rate limits, output policy, detection",
        description=(
            "Serve a model (or forward to an upstream endpoint) behind API keys, per-key rate "
            "limits, an output policy and stateful detection of model-inversion query streams. "
            "Alerts go to the audit log before the response is sent."
        ),
    )
    p.add_argument("-c", "--config", required=True, help="gateway configuration (gateway.yaml)")
    p.add_argument("--host", default=None, help="listen address (default: server.host, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="listen port (0: a free one)")
    p.add_argument(
        "--check",
        action="store_true",
        help="validate the configuration and load the model, then exit",
    )
    p.add_argument("--access-log", action="store_true", help="log every request (uvicorn)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(handler=cmd_serve)

    g = sub.add_parser("gateway", help="gateway utilities: hash an API key, example config")
    gsub = g.add_subparsers(dest="gateway_command", metavar="COMMAND")
    gsub.required = True
    h = gsub.add_parser(
        "hash-key",
        help="print the SHA-256 digest of an API key for the gateway configuration",
        description=(
            "Read an API key from standard input (or a prompt) and print the 'sha256' value "
            "for the gateway configuration. With --generate, make a new random key: it is "
            "printed once, to give to the client, and stored nowhere."
        ),
    )
    h.add_argument("--generate", action="store_true", help="generate a new random key")
    h.add_argument("--id", default="client", help="the key's id in the printed YAML snippet")
    h.set_defaults(handler=cmd_hash_key)
    i = gsub.add_parser("init", help="write an example gateway configuration (gateway.yaml)")
    i.add_argument("path", nargs="?", default="gateway.yaml")
    i.add_argument("--force", action="store_true", help="overwrite an existing file")
    i.set_defaults(handler=cmd_init)


def _setup_logging(verbose: bool) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.DEBUG if verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    logging.getLogger("invguard").setLevel(logging.DEBUG if verbose else logging.INFO)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the gateway (or, with ``--check``, load its model and exit)."""
    from invguard.gateway.app import describe_limits, limit_compute_threads, load_backend, serve
    from invguard.gateway.config import load_gateway_config

    _setup_logging(args.verbose)
    loaded = load_gateway_config(args.config)
    if args.port is not None and not 0 <= args.port <= 65535:
        raise InvalidParameterError(f"--port must be between 0 and 65535, got {args.port}")
    limit_compute_threads(1)
    if args.check:
        backend = load_backend(loaded)
        try:
            print(
                f"{args.config}: ok: {backend.description}, inputs {list(backend.input_shape)}, "
                f"{backend.num_classes} classes, {len(loaded.config.keys)} keys"
            )
            print(
                f"{args.config}: limits: "
                f"{describe_limits(loaded.config.server, backend.input_shape)}"
            )
        finally:
            backend.close()
        return EXIT_OK

    def ready(url: str) -> None:
        print(f"invguard gateway listening on {url}", file=sys.stderr, flush=True)

    serve(loaded, host=args.host, port=args.port, access_log=args.access_log, on_ready=ready)
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    """Write the example gateway configuration."""
    from invguard.gateway.config import EXAMPLE_CONFIG

    path = Path(args.path)
    if path.exists() and not args.force:
        raise InvalidParameterError(f"{path} exists; use --force to overwrite it")
    path.write_text(EXAMPLE_CONFIG, encoding="utf-8")
    print(f"wrote {path}: add your keys (invguard gateway hash-key --generate --id NAME)")
    return EXIT_OK


def cmd_hash_key(args: argparse.Namespace) -> int:
    """Print the SHA-256 digest of an API key read from stdin (or of a new ``--generate`` key)."""
    import getpass
    import secrets

    from invguard.gateway.config import KEY_ID_PATTERN, hash_api_key

    if not re.fullmatch(KEY_ID_PATTERN, args.id):
        raise InvalidParameterError(
            f"--id must be letters, digits and '_.@-' (up to 64 characters), got {args.id!r}"
        )
    if args.generate:
        key = "igk_" + secrets.token_urlsafe(32)
        print(f"# new API key for '{args.id}' (give it to the client; it is stored nowhere):")
        print(f"#   {key}")
    elif sys.stdin.isatty():
        key = getpass.getpass("API key (not echoed): ")
    else:
        key = sys.stdin.readline().rstrip("\r\n")
    if not key:
        raise InvalidParameterError("no API key given on standard input")
    if len(key) < MIN_KEY_CHARS:
        raise InvalidParameterError(
            f"the API key has {len(key)} characters; use at least {MIN_KEY_CHARS} random "
            "characters (or --generate)"
        )
    print(f"- id: {args.id}")
    print(f"  sha256: {hash_api_key(key)}")
    return EXIT_OK


def gateway_main(argv: Sequence[str] | None = None) -> int:
    """``python -m invguard.gateway``: ``serve`` and ``gateway`` without the rest of ``invguard``."""
    parser = argparse.ArgumentParser(prog="python -m invguard.gateway")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_serve_parser(sub)
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except InvGuardError as exc:
        print(f"{parser.prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return code
