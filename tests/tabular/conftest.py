"""Shared fixtures: the real Adult data and reference models, built once per session.

Every model is trained on the documented split (seed 0), single-threaded; the negative control is
a fully grown tree trained with the sensitive column shuffled across its training rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from invguard.tabular._threads import limit_threads
from invguard.tabular.data import TabularData, load_adult
from invguard.tabular.models import TrainedTabularModel, tabular_target, train_tabular_model
from invguard.tabular.scenario import TabularScenario, build_scenario, shuffle_sensitive
from invguard.targets.base import Target


@pytest.fixture(scope="session")
def adult() -> TabularData:
    return load_adult()


@pytest.fixture(scope="session")
def sex(adult: TabularData) -> TabularScenario:
    return build_scenario(adult, "sex", seed=0)


@pytest.fixture(scope="session")
def race(adult: TabularData) -> TabularScenario:
    return build_scenario(adult, "race", seed=0)


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """Small fits and predictions run single-threaded (see invguard.tabular._threads)."""
    with limit_threads(1):
        yield


def _train(sc: TabularScenario, arch: str, *, shuffle: bool = False) -> TrainedTabularModel:
    x = sc.train_x
    if shuffle:
        x = shuffle_sensitive(x, sc.attribute, np.random.default_rng(0))
    with limit_threads(1):
        return train_tabular_model(arch, x, sc.train_y, num_classes=sc.num_classes, seed=0)


def as_target(sc: TabularScenario, trained: TrainedTabularModel) -> Target:
    """A fresh target (query count 0) for a trained model."""
    return tabular_target(
        trained.model, n_features=sc.encoder.n_features, num_classes=sc.num_classes
    )


@pytest.fixture(scope="session")
def sex_tree(sex: TabularScenario) -> TrainedTabularModel:
    return _train(sex, "tree")


@pytest.fixture(scope="session")
def sex_tree_shuffled(sex: TabularScenario) -> TrainedTabularModel:
    return _train(sex, "tree", shuffle=True)


@pytest.fixture(scope="session")
def sex_logreg(sex: TabularScenario) -> TrainedTabularModel:
    return _train(sex, "logreg")


@pytest.fixture(scope="session")
def race_tree(race: TabularScenario) -> TrainedTabularModel:
    return _train(race, "tree")
