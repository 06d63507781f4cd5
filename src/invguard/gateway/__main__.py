"""``python -m invguard.gateway serve --config gateway.yaml`` (the same as ``invguard serve``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from invguard.errors import InvGuardError
from invguard.gateway.cli import add_serve_parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m invguard.gateway")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_serve_parser(sub)
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except InvGuardError as exc:
        print(f"{parser.prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
