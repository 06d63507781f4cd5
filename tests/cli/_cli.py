"""Running the CLI in-process for tests: exit code, stdout and stderr."""

from __future__ import annotations

import pytest

from invguard.cli import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``invguard ARGS`` in this process; argparse usage errors give their exit code too."""
    try:
        code = main(args)
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
