from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from invguard.data import ImageDataset, load_image_folder, load_npz_dataset
from invguard.errors import DataError


def _folder(root: Path, faces: ImageDataset, classes: int = 3) -> Path:
    for split, x, y in (
        ("train", faces.x_train, faces.y_train),
        ("test", faces.x_test, faces.y_test),
    ):
        for c in range(classes):
            d = root / split / f"person{c}"
            d.mkdir(parents=True)
            for i, img in enumerate(x[y == c]):
                Image.fromarray((img[0] * 255).round().astype(np.uint8)).save(d / f"{i}.png")
    return root


def test_image_folder_round_trip(tmp_path: Path, faces: ImageDataset) -> None:
    data = load_image_folder(_folder(tmp_path / "faces", faces))
    assert data.class_names == ("person0", "person1", "person2")
    assert data.x_train.shape == (21, 1, 56, 46)
    assert data.x_test.shape == (9, 1, 56, 46)
    assert np.abs(data.x_train - faces.x_train[faces.y_train < 3]).max() <= 0.5 / 255 + 1e-6
    small = load_image_folder(tmp_path / "faces", image_size=(23, 28))
    assert small.image_shape == (1, 28, 23)


def test_image_folder_errors(tmp_path: Path, faces: ImageDataset) -> None:
    with pytest.raises(DataError, match="must contain a 'train' folder"):
        load_image_folder(tmp_path)
    root = _folder(tmp_path / "f", faces, classes=2)
    (root / "train" / "empty").mkdir()
    with pytest.raises(DataError, match="has no images"):
        load_image_folder(root)
    (root / "train" / "empty" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image"):
        load_image_folder(root)


def test_npz_round_trip_and_errors(tmp_path: Path, digits: ImageDataset) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, x_train=digits.x_train[:, 0], y_train=digits.y_train, x_test=digits.x_test,
             y_test=digits.y_test)  # fmt: skip
    data = load_npz_dataset(p)
    assert data.image_shape == (1, 8, 8)
    assert data.num_classes == 10
    np.savez(p, x_train=digits.x_train, y_train=digits.y_train.astype(float),
             x_test=digits.x_test, y_test=digits.y_test)  # fmt: skip
    with pytest.raises(DataError, match="'y_train' must hold integer class labels"):
        load_npz_dataset(p)
    np.savez(p, x_train=digits.x_train)
    with pytest.raises(DataError, match="lacks the array 'y_train'"):
        load_npz_dataset(p)
    p.write_bytes(b"junk")
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        load_npz_dataset(p)
    obj = tmp_path / "obj.npz"
    np.savez(obj, x_train=np.array([{"a": 1}], dtype=object), y_train=np.zeros(1, int),
             x_test=np.zeros((1, 1, 2, 2)), y_test=np.zeros(1, int))  # fmt: skip
    with pytest.raises(
        DataError, match=r"not a readable \.npz"
    ):  # object arrays need pickle: refused
        load_npz_dataset(obj)
