from __future__ import annotations

import numpy as np

from invguard.data import ImageDataset


def test_digits_split_is_per_class_and_deterministic(digits: ImageDataset) -> None:
    assert digits.image_shape == (1, 8, 8)
    assert len(digits.y_train) + len(digits.y_test) == 1797
    assert set(np.unique(digits.y_train)) == set(range(10))
    frac = np.bincount(digits.y_train) / (np.bincount(digits.y_train) + np.bincount(digits.y_test))
    assert np.all(np.abs(frac - 0.7) < 0.01)
    assert digits.x_train.max() <= 1.0
