"""Shared fixtures: real data sets and real models, trained once per test session.

Set INVGUARD_TEST_CACHE to a folder to keep trained models between runs (CI starts empty, but the
judges of the built-in data sets load from the package: invguard.models.shipped). Under
pytest-xdist (``make test`` runs two workers) the workers share one cache folder, and its lock makes
each model train once; each worker gets an equal share of the cores.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from invguard.data import ImageDataset, load_att_faces, load_digits_dataset
from invguard.metrics import Evaluator
from invguard.models import ModelCache, TrainedModel, train_evaluation_model, train_target


def pytest_configure(config: pytest.Config) -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        # small-batch CPU training gains little from a second thread here, and two workers with
        # two threads each on two cores lose time to each other: one share of the cores each
        import torch

        share = str(max(1, (os.cpu_count() or 1) // workers))
        threads = os.environ.setdefault("OMP_NUM_THREADS", share)  # also the CLI's subprocesses
        torch.set_num_threads(int(threads))


# Under pytest-xdist, whole modules go to the workers in collection order (make test passes
# --dist loadscope --no-loadscope-reorder), and this is that order. The first three modules each
# train a different share of the targets that many others load from the shared model cache (the
# judges ship with the package, models/shipped.py), so that neither worker waits long on the
# other's cache lock; then the slow modules, then the rest, so that the two workers finish together.
FIRST_MODULES = (
    "tests/assess/test_assess_e2e.py",
    "tests/attacks/test_label_only.py",
    "tests/assess/test_history_secrets.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return

    def rank(item: pytest.Item) -> tuple[int, int]:
        module = item.nodeid.split("::", 1)[0]
        if module in FIRST_MODULES:
            return 0, FIRST_MODULES.index(module)
        return (1, 0) if item.get_closest_marker("slow") else (2, 0)

    items.sort(key=rank)  # stable: each module's tests keep their order


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> ModelCache:
    root = os.environ.get("INVGUARD_TEST_CACHE")
    if root:
        return ModelCache(Path(root))
    if os.environ.get("PYTEST_XDIST_WORKER"):  # one folder for all workers of this run
        shared = tmp_path_factory.getbasetemp().parent / "model-cache"
        shared.mkdir(exist_ok=True)
        return ModelCache(shared)
    return ModelCache(tmp_path_factory.mktemp("model-cache"))


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
