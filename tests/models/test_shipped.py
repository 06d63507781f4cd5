"""The judges shipped in the package: found by cache key, checked by SHA-256, never stale."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from invguard.data import ImageDataset, load_builtin, load_builtin_auxiliary
from invguard.judges import is_face_data
from invguard.judges.open_set import open_set_dataset
from invguard.models import ModelCache
from invguard.models.shipped import (
    SHIPPED_DIR,
    SHIPPED_ENV,
    SHIPPED_PANELS,
    load_shipped,
    read_manifest,
)
from invguard.models.training import accuracy
from invguard.models.zoo import EVALUATION_ARCH, evaluation_model_keys, train_evaluation_model

REBUILD = "run .venv/bin/python scripts/build_shipped_weights.py and commit its output"


def _panel_dataset(name: str, public: str | None) -> ImageDataset:
    dataset = load_builtin(name)
    return open_set_dataset(dataset, load_builtin_auxiliary(public)) if public else dataset


def test_manifest_matches_the_current_recipes() -> None:
    """A recipe, architecture or data change gives new keys: the shipped files must be rebuilt."""
    wanted: set[str] = set()
    for name, public in SHIPPED_PANELS:
        dataset = _panel_dataset(name, public)
        keys = evaluation_model_keys(dataset)
        # faces are judged by the face embedding, other data by a second evaluation model
        wanted.update(keys.values() if not is_face_data(dataset) else [keys[EVALUATION_ARCH]])
    shipped = set(read_manifest())
    assert shipped == wanted, f"shipped judges are stale: {REBUILD}"
    for key in shipped:
        assert ModelCache(SHIPPED_DIR).path(key).is_file(), f"{key[:12]} missing: {REBUILD}"


def test_faces_judge_loads_without_training(
    faces: ImageDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SHIPPED_ENV, raising=False)
    trained = train_evaluation_model(faces, cache=ModelCache(tmp_path))
    assert trained.from_cache
    assert trained.source == "shipped"
    assert not any(tmp_path.rglob("*.safetensors"))  # nothing copied into the user's cache
    entry = read_manifest()[trained.cache_key]
    measured = accuracy(trained.model, faces.x_test, faces.y_test)
    assert measured == pytest.approx(entry["test_accuracy"], abs=1e-9)
    assert measured >= 0.98  # the README's 98.3 % on the 120 held-out photos


def _faces_key(faces: ImageDataset) -> str:
    return evaluation_model_keys(faces)[EVALUATION_ARCH]


def test_damaged_file_is_ignored_with_a_warning(
    faces: ImageDataset, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = _faces_key(faces)
    root = tmp_path / "weights"
    shutil.copytree(SHIPPED_DIR, root)
    assert load_shipped(key, root) is not None
    path = ModelCache(root).path(key)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the tensors
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        assert load_shipped(key, root) is None
    assert "damaged" in caplog.text
    path.unlink()
    assert load_shipped(key, root) is None


def test_switched_off_and_unknown_keys(
    faces: ImageDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = _faces_key(faces)
    assert load_shipped("0" * 64) is None
    assert load_shipped(key) is not None
    monkeypatch.setenv(SHIPPED_ENV, "0")
    assert load_shipped(key) is None
    assert evaluation_model_keys(faces, seed=1)[EVALUATION_ARCH] not in read_manifest()
