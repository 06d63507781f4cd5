"""What the command groups share: exit codes, the one-line-error parser, argument types, options.

Import-light: nothing here imports torch, numpy or another heavy module at import time; helpers
that need one (``progress``, ``load_dataset``, ``cache``) import it when called.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from invguard.errors import InvalidParameterError

# Function-level imports below are for laziness: parsers are built without heavy modules.

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]
SubParsers = Any  # argparse._SubParsersAction[argparse.ArgumentParser]

DATASETS = ("att-faces", "att-faces-full", "att-faces-private30", "digits", "mnist-0-4")
ARCHS = ("softmax", "mlp", "cnn")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2)."""

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
