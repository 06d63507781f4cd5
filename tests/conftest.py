"""Shared fixtures: real data sets and real models, trained once per test session.

Set INVGUARD_TEST_CACHE to a folder to keep trained models between runs (CI starts empty).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from invguard.data import ImageDataset, load_att_faces, load_digits_dataset
from invguard.metrics import Evaluator
from invguard.models import ModelCache, TrainedModel, train_evaluation_model, train_target


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> ModelCache:
    root = os.environ.get("INVGUARD_TEST_CACHE")
    return ModelCache(Path(root) if root else tmp_path_factory.mktemp("model-cache"))


@pytest.fixture(scope="session")
def faces() -> ImageDataset:
    return load_att_faces()


@pytest.fixture(scope="session")
def digits() -> ImageDataset:
    return load_digits_dataset()


@pytest.fixture(scope="session")
def digits_mlp(digits: ImageDataset, model_cache: ModelCache) -> TrainedModel:
    return train_target(digits, "mlp", cache=model_cache)


@pytest.fixture(scope="session")
def digits_evaluator(digits: ImageDataset, model_cache: ModelCache) -> Evaluator:
    return Evaluator(train_evaluation_model(digits, cache=model_cache).model)


@pytest.fixture(scope="session")
def faces_softmax(faces: ImageDataset, model_cache: ModelCache) -> TrainedModel:
    return train_target(faces, "softmax", cache=model_cache)


@pytest.fixture(scope="session")
def faces_mlp(faces: ImageDataset, model_cache: ModelCache) -> TrainedModel:
    return train_target(faces, "mlp", cache=model_cache)


@pytest.fixture(scope="session")
def faces_evaluator(faces: ImageDataset, model_cache: ModelCache) -> Evaluator:
    return Evaluator(train_evaluation_model(faces, cache=model_cache).model)
