"""The ``invguard`` command line: one module per command group, the top level in ``parser``.

Exit codes, the same on every command (and in each command's ``--help``): 0 success; 1 findings
over the gate, a significant leak, a requested defence or attack failed, or the assessment is
incomplete; 2 bad input or usage; 130 interrupted; 141 stdout closed early (a pipe).
Errors that the user can fix are one line on stderr; heavy modules load only when a command runs,
so ``invguard --help`` and ``invguard audit ...`` never import torch. ``-q``/``-v`` work before or
after any sub-command; the reporting commands take ``--format table|json|sarif|markdown`` and
``-o FILE`` (written atomically).
"""

from invguard.cli._common import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE
from invguard.cli.parser import build_parser, main

__all__ = ["EXIT_FINDINGS", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]
