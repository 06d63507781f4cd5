"""The top-level ``invguard`` parser and ``main``: one sub-parser per command group.

Building the parser imports no implementation module (no torch, numpy or pydantic); each
command's handler imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from invguard import __version__
from invguard.cli._common import EXIT_USAGE, Handler, Parser
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
    )
    parser.add_argument("--version", action="version", version=f"invguard {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``invguard ARGV``: 0 success, 1 a finding/check failed, 2 bad input or usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except InvGuardError as exc:
        print(f"invguard: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("invguard: interrupted", file=sys.stderr)
        return 130
