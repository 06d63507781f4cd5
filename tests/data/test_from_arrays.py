"""ImageDataset.from_arrays: the layouts and dtypes users have, and one-line errors for the rest."""

from __future__ import annotations

import numpy as np
import pytest

from invguard.data import ImageDataset
from invguard.errors import DataError, InvalidParameterError


def _grey(n: int = 12, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 6, 5), dtype=np.uint8)
    y = np.arange(n) % classes
    return x, y


def test_uint8_grey_is_scaled_and_split_stratified() -> None:
    x, y = _grey(12, 3)
    data = ImageDataset.from_arrays(x, y, class_names=["a", "b", "c"], name="mine")
    assert data.name == "mine"
    assert data.class_names == ("a", "b", "c")
    assert data.image_shape == (1, 6, 5)
    assert data.x_train.dtype == np.float32
    assert data.y_train.dtype == np.int64
    assert float(data.x_train.max()) <= 1.0
    assert float(data.x_train.min()) >= 0.0
    # 4 images per class, a quarter (one) of each held out
    assert np.bincount(data.y_test).tolist() == [1, 1, 1]
    assert np.bincount(data.y_train).tolist() == [3, 3, 3]
    # every image lands in exactly one split, unchanged apart from the 0-255 scaling
    pool = {img.tobytes() for img in (x.astype(np.float32) / 255.0)[:, None]}
    got = [img.tobytes() for img in np.concatenate([data.x_train, data.x_test])]
    assert len(got) == 12
    assert set(got) == pool


def test_split_is_seeded() -> None:
    x, y = _grey(40, 4)
    a = ImageDataset.from_arrays(x, y, seed=1)
    b = ImageDataset.from_arrays(x, y, seed=1)
    c = ImageDataset.from_arrays(x, y, seed=2)
    assert a.fingerprint() == b.fingerprint()
    assert not np.array_equal(a.x_test, c.x_test)
    assert np.bincount(a.y_test).tolist() == [2, 2, 2, 2]  # round(0.25 * 10) per class


def test_channels_first_and_last_agree() -> None:
    rng = np.random.default_rng(0)
    first = rng.random((8, 3, 7, 9), dtype=np.float32)
    last = first.transpose(0, 2, 3, 1).copy()  # (n, h, w, 3)
    y = np.arange(8) % 2
    a = ImageDataset.from_arrays(first, y, first[:2], y[:2])
    b = ImageDataset.from_arrays(last, y, last[:2], y[:2])
    assert a.image_shape == b.image_shape == (3, 7, 9)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    grey_last = ImageDataset.from_arrays(first[:, :1].transpose(0, 2, 3, 1), y, test_fraction=0.0)
    assert grey_last.image_shape == (1, 7, 9)
    assert len(grey_last.y_test) == 0


def test_given_test_set_float64_and_integral_float_labels() -> None:
    x = np.linspace(0, 1, 4 * 25, dtype=np.float64).reshape(4, 5, 5)
    data = ImageDataset.from_arrays(x, np.array([0.0, 1.0, 0.0, 1.0]), x[:1], [1])
    assert data.x_train.dtype == np.float32
    assert data.y_train.tolist() == [0, 1, 0, 1]
    assert data.y_test.tolist() == [1]
    assert data.class_names == ("0", "1")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"x_train": np.zeros((4, 5))}, "x_train must have shape (n, h, w)"),
        ({"x_train": np.zeros((4, 1, 5, 5, 1))}, "x_train must have shape (n, h, w)"),
        ({"y_train": np.array([0, 1, 0])}, "y_train has 3 labels but x_train has 4 images"),
        ({"y_train": np.eye(2)[[0, 1, 0, 1]]}, "one-hot labels? use y.argmax(1)"),
        ({"y_train": np.array(["a", "b", "a", "b"])}, "integer class labels 0..k-1"),
        ({"y_train": np.array([0.5, 1, 0, 1])}, "non-integer values"),
        ({"y_train": np.array([1, 2, 1, 2])}, "no image of class 0 (labels must start at 0)"),
        ({"y_train": np.array([0, -1, 0, 1])}, "y_train labels must be integers 0..1"),
        (
            {"y_train": np.array([0, 1, 2, 1]), "class_names": ["a", "b"]},
            "0..1 (one per class name), got values from 0 to 2",
        ),
        ({"x_train": np.full((4, 5, 5), np.nan)}, "x_train contains NaN values"),
        ({"x_train": np.full((4, 5, 5), 2.0)}, "its values must lie in [0, 1]"),
        ({"x_train": np.full((4, 5, 5), 200.0)}, "divide 0-255 pixel values by 255"),
        ({"x_train": np.full((4, 5, 5), 300, np.int32)}, "read as 0-255 pixel values"),
        ({"x_train": np.zeros((4, 5, 5), bool)}, "must hold numbers"),
        ({"x_test": np.zeros((1, 5, 5))}, "x_test was given without y_test"),
        ({"x_test": np.zeros((1, 5, 4)), "y_test": [0]}, "x_test images have shape"),
        ({"x_test": np.zeros((1, 5, 5)), "y_test": [2]}, "y_test labels must be integers 0..1"),
        ({"y_train": np.array([0, 0, 0, 1])}, "y_train: class 1 has 1 image, too few"),
        ({"y_train": np.zeros(4, np.int64)}, "at least 2 classes"),
        ({"class_names": ["a", "a"]}, "class_names must not repeat"),
    ],
)
def test_errors_are_one_line_and_name_the_field(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"x_train": np.zeros((4, 5, 5)), "y_train": np.array([0, 1, 0, 1])}
    args.update(kwargs)
    with pytest.raises(DataError) as info:
        ImageDataset.from_arrays(**args)  # type: ignore[arg-type]
    text = str(info.value)
    assert message in text, text
    assert "\n" not in text


def test_bad_test_fraction_is_a_parameter_error() -> None:
    x, y = _grey(8, 2)
    with pytest.raises(InvalidParameterError, match="test_fraction"):
        ImageDataset.from_arrays(x, y, test_fraction=1.0)
