"""Torch only where a command needs it: ``--help`` of every command and every ``audit`` command
run in a fresh interpreter without importing torch (or numpy)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from invguard.cli import build_parser

HEAVY = ("torch", "numpy")
REPORT = f"\nimport sys\nprint('heavy:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"


def heavy_modules_after(code: str, cwd: Path | None = None) -> list[str]:
    """The heavy modules loaded once ``code`` has run in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code) + REPORT],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
        timeout=120,
    )
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("heavy:"), result.stdout
    return [m for m in last.removeprefix("heavy:").split(",") if m]


def test_building_the_parser_imports_no_torch() -> None:
    assert heavy_modules_after("from invguard.cli import build_parser\nbuild_parser()") == []


def test_help_of_every_command_imports_no_torch() -> None:
    commands = next(
        a.choices for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    argvs = [["--help"], *([name, "--help"] for name in commands)]
    assert len(argvs) > 10
    code = f"""
        import contextlib, io
        from invguard.cli import main

        for argv in {argvs!r}:
            with contextlib.redirect_stdout(io.StringIO()):
                try:
                    main(argv)
                except SystemExit as exc:
                    assert exc.code == 0, (argv, exc.code)
        """
    assert heavy_modules_after(code) == []


def test_gateway_module_help_imports_no_torch() -> None:
    code = """
        import contextlib, io
        from invguard.cli.gateway import gateway_main

        with contextlib.redirect_stdout(io.StringIO()):
            try:
                gateway_main(["serve", "--help"])
            except SystemExit:
                pass
        """
    assert heavy_modules_after(code) == []


@pytest.mark.parametrize(
    "argvs",
    [
        [["audit", "append", "--actor", "ci", "--action", "x.y", "--subject", "m"]],
        [
            ["audit", "append", "--actor", "ci", "--action", "x.y", "--subject", "m"],
            ["audit", "log", "--json"],
            ["audit", "verify"],
            ["audit", "prove", "1"],
            ["audit", "keygen", "--out-private", "k", "--out-public", "k.pub"],
            ["audit", "checkpoint", "--key", "k", "--out", "cp"],
            ["audit", "verify", "--checkpoint", "cp", "--public-key", "k.pub"],
        ],
    ],
    ids=["append", "session"],
)
def test_audit_commands_import_no_torch(argvs: list[list[str]], tmp_path: Path) -> None:
    code = f"""
        import contextlib, io
        from invguard.cli import main

        for argv in {argvs!r}:
            with contextlib.redirect_stdout(io.StringIO()):
                assert main(argv) == 0, argv
        """
    assert heavy_modules_after(code, cwd=tmp_path) == []
    assert (tmp_path / "invguard-audit.db").is_file()
