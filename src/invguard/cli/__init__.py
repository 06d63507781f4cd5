"""The ``invguard`` command line: one module per command group, the top level in ``parser``.

Exit codes: 0 success, 1 a finding/check failed (used by later gates), 2 bad input or usage.
Errors that the user can fix are one line on stderr; heavy modules load only when a command runs,
so ``invguard --help`` and ``invguard audit ...`` never import torch.
"""

from invguard.cli._common import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE
from invguard.cli.parser import build_parser, main

__all__ = ["EXIT_FINDINGS", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]
