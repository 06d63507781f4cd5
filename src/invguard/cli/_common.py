"""What the command groups share: exit codes, the one-line-error parser, argument types, options.

Import-light: nothing here imports torch, numpy or another heavy module at import time; helpers
that need one (``progress``, ``load_dataset``, ``cache``) import it when called.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from invguard.errors import InvalidParameterError
from invguard.fileio import write_atomic

# Function-level imports below are for laziness: parsers are built without heavy modules.

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a reader that stopped early

Handler = Callable[[argparse.Namespace], int]
SubParsers = Any  # argparse._SubParsersAction[argparse.ArgumentParser]

DATASETS = ("att-faces", "att-faces-full", "att-faces-private30", "digits", "mnist-0-4")
ARCHS = ("softmax", "mlp", "cnn")


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that a text with line breaks (an epilog) keeps them."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) and epilogs that keep their lines."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# ---------------------------------------------------------------------------------------------
# argument types


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text[:40]!r}")
    return value


def nonneg_int(what: str) -> Callable[[str], int]:
    """An argument type for an integer >= 0; its error reads 'expected <what> >= 0, got ...'."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = -1
        if value < 0:
            raise argparse.ArgumentTypeError(f"expected {what} >= 0, got {text[:40]!r}")
        return value

    return parse


def parse_size(text: str) -> tuple[int, int]:
    """'WIDTHxHEIGHT', e.g. '46x56'."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected WIDTHxHEIGHT such as 46x56, got {text!r}"
        ) from None
    if w < 4 or h < 4:
        raise argparse.ArgumentTypeError(f"image size must be at least 4x4, got {text!r}")
    return (w, h)


def parse_normalize(text: str) -> tuple[list[float], list[float]]:
    """'MEAN[,MEAN..]/STD[,STD..]', e.g. '0.5/0.5' or '0.485,0.456,0.406/0.229,0.224,0.225'."""
    try:
        mean, std = text.split("/")
        pair = ([float(v) for v in mean.split(",")], [float(v) for v in std.split(",")])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected MEAN[,MEAN..]/STD[,STD..] such as 0.5/0.5 or "
            f"0.485,0.456,0.406/0.229,0.224,0.225, got {text!r}"
        ) from None
    if any(v <= 0 for v in pair[1]):
        raise argparse.ArgumentTypeError(f"every STD must be > 0, got {text!r}")
    return pair


def parse_classes(text: str) -> list[int]:
    """'0,3,7' or '0-9' or a mix: '0-4,10'."""
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                out.extend(range(int(lo), int(hi) + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected class indices like '0,3,7' or '0-9', got {text!r}"
        ) from None
    if not out:
        raise argparse.ArgumentTypeError("expected at least one class index")
    return out


# ---------------------------------------------------------------------------------------------
# shared options and run-time helpers


def add_common(p: argparse.ArgumentParser) -> None:
    """``--seed``, ``--cache-dir`` and ``-q`` of the model commands."""
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--cache-dir",
        default=None,
        help="model cache folder (default $INVGUARD_CACHE_DIR or ~/.cache/invguard)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def progress(desc: str, enabled: bool) -> Callable[[int, int], None] | None:
    """A tqdm-backed ``progress(done, total)`` callback on stderr, or None when disabled."""
    if not enabled:
        return None
    from tqdm import tqdm

    bar: list[Any] = []

    def update(done: int, total: int) -> None:
        if not bar:
            bar.append(
                tqdm(total=total, desc=desc, unit="it", leave=False, file=sys.stderr, disable=None)
            )
        b = bar[0]
        b.update(done - b.n)
        if done >= total:
            b.close()

    return update


def load_dataset(name: str, size: tuple[int, int] | None) -> Any:
    """A built-in data set; ``size`` resizes the AT&T faces."""
    from invguard.data import load_att_faces, load_builtin

    if size is not None:
        if not name.startswith("att-faces"):
            raise InvalidParameterError(
                f"--image-size applies to the AT&T faces only, not to dataset {name!r}"
            )
        return load_att_faces(size)
    return load_builtin(name)


def cache(args: argparse.Namespace) -> Any:
    """The model cache of ``--cache-dir`` (default: the user's cache folder)."""
    from invguard.models import ModelCache, default_cache_dir

    return ModelCache(args.cache_dir or default_cache_dir())


# ---------------------------------------------------------------------------------------------
# exit codes, global flags and machine-readable output (the same on every command)

GATE_DEFAULT = "findings over the gate"


def exit_codes(one: str = GATE_DEFAULT) -> str:
    """The ``--help`` epilog listing the exit codes; ``one`` says what exit 1 means here."""
    import textwrap

    meaning = textwrap.fill(one, width=78, initial_indent="  1    ", subsequent_indent=" " * 7)
    return (
        "exit codes:\n"
        "  0    success\n"
        f"{meaning}\n"
        "  2    bad input or usage (a one-line error on stderr)\n"
        f"  {EXIT_INTERRUPTED}  interrupted; {EXIT_BROKEN_PIPE}: stdout was closed early (a pipe)\n"
    )


GENERIC_EPILOG = exit_codes("a check or gate failed (commands without one never exit 1)")

_GLOBAL_FLAGS: tuple[tuple[tuple[str, str], str, str], ...] = (
    (("-q", "--quiet"), "quiet", "less output: no progress bars or notes on stderr"),
    (("-v", "--verbose"), "verbose", "log what happens (INFO messages on stderr)"),
)


def add_global_flags(parser: argparse.ArgumentParser) -> None:
    """``-q``/``-v`` on ``parser`` (default False) and on every sub-parser below it.

    Below the top they default to ``argparse.SUPPRESS``, so ``invguard -v assess`` and
    ``invguard assess -v`` both set ``verbose``: a sub-command's own default never clobbers the
    value given before it. Options a sub-parser already has (its own ``-q``) get that default too.
    Sub-parsers without an epilog get the list of exit codes.
    """
    _add_flags(parser, top=True)


def _add_flags(parser: argparse.ArgumentParser, *, top: bool) -> None:
    for flags, dest, text in _GLOBAL_FLAGS:
        existing = [parser._option_string_actions.get(f) for f in flags]
        if any(a is not None for a in existing):
            for a in existing:
                if a is not None and not top:
                    a.default = argparse.SUPPRESS
            continue
        parser.add_argument(
            *flags,
            dest=dest,
            action="store_true",
            default=False if top else argparse.SUPPRESS,
            help=text,
        )
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for action in subs:
        for child in {id(c): c for c in action.choices.values()}.values():
            if child.epilog is None and not any(
                isinstance(a, argparse._SubParsersAction) for a in child._actions
            ):
                child.epilog = GENERIC_EPILOG
            _add_flags(child, top=False)


FORMATS = ("table", "json", "sarif", "markdown")


def add_format_options(
    p: argparse.ArgumentParser,
    *,
    output_flags: Sequence[str] = ("-o", "--output"),
    json_alias: bool = False,
) -> None:
    """``--format`` (table, json, sarif, markdown) and ``-o FILE``; ``--json`` = ``--format json``."""
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="what to print: table (for people, the default), json (a stable schema), sarif "
        "(findings, 'assess' only) or markdown",
    )
    p.add_argument(
        *output_flags,
        dest="output_file",
        metavar="FILE",
        type=Path,
        help="write that output to FILE (complete or not at all) instead of stdout",
    )
    if json_alias:
        p.add_argument(
            "--json", dest="format", action="store_const", const="json", help="= --format json"
        )


def check_format(args: argparse.Namespace, command: str, allowed: Sequence[str]) -> str:
    """The chosen ``--format``, or a one-line error when ``command`` has no such output."""
    fmt: str = getattr(args, "format", "table")
    if fmt not in allowed:
        raise InvalidParameterError(
            f"--format {fmt}: '{command}' has no {fmt} output (SARIF holds the findings of "
            f"'invguard assess'); use one of {', '.join(allowed)}"
        )
    return fmt


def emit(args: argparse.Namespace, text: str) -> None:
    """Print the formatted output on stdout, or write it to ``-o FILE`` (and say so on stderr)."""
    if not text.endswith("\n"):
        text += "\n"
    out: Path | None = getattr(args, "output_file", None)
    if out is None:
        write_stdout(text)
        return
    write_atomic(out, text)
    note(args, f"wrote {out}")


def write_stdout(text: str) -> None:
    """Write ``text`` to stdout whole: under ``python -u`` (PYTHONUNBUFFERED) stdout is a raw
    file whose ``write`` may take only part of a large text into a pipe, and the text layer drops
    the rest; here every byte is written, or the closed pipe raises :class:`BrokenPipeError`."""
    stream = sys.stdout
    binary = getattr(stream, "buffer", None)
    if binary is None:  # a text-only stream (a test's StringIO)
        stream.write(text)
        return
    stream.flush()
    view = memoryview(text.encode(stream.encoding or "utf-8", stream.errors or "strict"))
    while view:
        n = binary.write(view)
        view = view[n or 0 :]
    binary.flush()


def note(args: argparse.Namespace, message: str) -> None:
    """A line on stderr for people (not with ``-q``)."""
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr, flush=True)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A small Markdown table (``|`` in cells escaped)."""

    def cell(v: str) -> str:
        return v.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
