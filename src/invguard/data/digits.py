"""scikit-learn's 8x8 hand-written digits: a small, fast data set for tests and examples."""

from __future__ import annotations

import numpy as np

from invguard.data.base import ImageDataset

DIGITS_TRAIN_FRACTION = 0.7


def load_digits_dataset() -> ImageDataset:
    """1,797 8x8 digits scaled to [0, 1].

    Split: for each class, the first 70% of its images in scikit-learn's order train, the rest test.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / 16.0)[:, None]
    y = np.asarray(bunch.target, dtype=np.int64)
    train = np.zeros(len(y), dtype=bool)
    for c in range(10):
        idx = np.flatnonzero(y == c)
        train[idx[: round(DIGITS_TRAIN_FRACTION * len(idx))]] = True
    return ImageDataset(
        name="digits-8x8",
        x_train=x[train],
        y_train=y[train],
        x_test=x[~train],
        y_test=y[~train],
        class_names=tuple(str(d) for d in range(10)),
        description="scikit-learn digits (UCI), 8x8; first 70% of each class train, rest test",
    )
