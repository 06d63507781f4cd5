"""``invguard audit ...`` commands (placeholder until the audit log lands)."""

from __future__ import annotations

import argparse
from typing import Any


def add_audit_parser(sub: Any) -> None:
    """Register ``invguard audit`` and its sub-commands on the top-level sub-parsers ``sub``."""
    p: argparse.ArgumentParser = sub.add_parser("audit", help="tamper-evident audit log")
    p.set_defaults(handler=lambda args: 2)
