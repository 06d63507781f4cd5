"""The top-level ``invguard`` parser and ``main``: one sub-parser per command group.

Building the parser imports no implementation module (no torch, numpy or pydantic); each
command's handler imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from invguard import __version__
from invguard.cli._common import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Handler,
    Parser,
    add_global_flags,
    exit_codes,
)
from invguard.cli.assess import add_assess_parsers
from invguard.cli.attack import add_attack_parser
from invguard.cli.audit import add_audit_parser
from invguard.cli.defend import add_defend_parser
from invguard.cli.demo import add_demo_parser
from invguard.cli.gateway import add_serve_parser
from invguard.cli.judge import add_judge_parser
from invguard.cli.review import add_review_parser
from invguard.cli.tabular import add_tabular_parser
from invguard.cli.train import add_train_parser
from invguard.errors import InvGuardError


def build_parser() -> argparse.ArgumentParser:
    """The ``invguard`` parser with every command (in the order ``--help`` lists them)."""
    parser = Parser(
        prog="invguard",
        description="Measure how much of its training data a model leaks through model inversion.",
        epilog=exit_codes(
            "findings over the gate, a significant leak, a requested defence or attack failed, "
            "or the assessment is incomplete"
        ),
    )
    parser.add_argument("--version", action="version", version=f"invguard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    add_demo_parser(sub)
    add_attack_parser(sub)
    add_judge_parser(sub)
    add_train_parser(sub)
    add_assess_parsers(sub)
    add_audit_parser(sub)
    add_defend_parser(sub)
    add_review_parser(sub)
    add_serve_parser(sub)
    add_tabular_parser(sub)
    add_global_flags(parser)  # -q/-v before or after any sub-command
    return parser


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a file descriptor (a test's capture)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``invguard ARGV``: 0 success, 1 a finding/check failed, 2 bad input or usage.

    A reader that closes stdout early (``invguard history --format json | head -1``) ends the
    command quietly with 141, as a shell reports for SIGPIPE, and no traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.INFO if args.verbose else logging.ERROR if args.quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    handler: Handler = args.handler
    try:
        code = handler(args)
        sys.stdout.flush()  # a broken pipe shows here, not in the interpreter's final flush
        return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except InvGuardError as exc:
        print(f"invguard: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("invguard: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
