"""Tabular models through every adapter: skops files, ONNX, a real loopback HTTP server, torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from invguard.errors import DataError, InvalidParameterError, ModelError
from invguard.gateway.model_server import (
    PREDICT_PATH,
    create_model_app,
    serve_in_thread,
    server_stats,
)
from invguard.tabular.attacks import CSMIA, FredriksonMAP
from invguard.tabular.data import TabularEncoder
from invguard.tabular.models import (
    MLPConfig,
    TrainedTabularModel,
    encoding_path,
    load_tabular_target,
    save_tabular_model,
    tabular_target,
    train_tabular_model,
)
from invguard.tabular.scenario import TabularScenario
from invguard.targets.http import HttpTarget
from invguard.targets.onnx import OnnxTarget
from invguard.targets.pytorch import TorchTarget

from .conftest import as_target


def test_skops_round_trip_with_encoding(
    sex: TabularScenario, sex_tree: TrainedTabularModel, tmp_path: Path
) -> None:
    model_path, enc_path = save_tabular_model(sex_tree.model, tmp_path / "tree.skops", sex.encoder)
    assert enc_path == encoding_path(model_path) == tmp_path / "tree.encoding.json"
    encoder = TabularEncoder.load(enc_path)
    assert encoder.to_dict() == sex.encoder.to_dict()
    loaded = load_tabular_target(model_path, encoder=encoder)
    x = sex.x[:500]
    np.testing.assert_array_equal(loaded.predict(x), as_target(sex, sex_tree).predict(x))
    assert loaded.input_shape == (sex.encoder.n_features,)


def test_model_files_are_checked(
    sex: TabularScenario, sex_tree: TrainedTabularModel, tmp_path: Path
) -> None:
    with pytest.raises(InvalidParameterError, match="saved with skops"):
        save_tabular_model(sex_tree.model, tmp_path / "tree.onnx", sex.encoder)
    with pytest.raises(InvalidParameterError, match=r"\.skops"):
        save_tabular_model(sex_tree.model, tmp_path / "tree.pkl", sex.encoder)
    with pytest.raises(ModelError, match="does not exist"):
        load_tabular_target(tmp_path / "none.skops", encoder=sex.encoder)
    # a model trained on fewer columns than the data encode to
    narrow = train_tabular_model("tree", sex.train_x[:, :40], sex.train_y, seed=0)
    path, _ = save_tabular_model(narrow.model, tmp_path / "narrow.skops", sex.encoder)
    with pytest.raises(DataError, match="takes 40 input features, but the data encode to"):
        load_tabular_target(path, encoder=sex.encoder)


@pytest.fixture(scope="module")
def small_mlp(sex: TabularScenario) -> TrainedTabularModel:
    return train_tabular_model(
        "mlp", sex.train_x, sex.train_y, seed=0, mlp=MLPConfig(hidden=(32,), epochs=2)
    )


def test_mlp_training_is_deterministic(
    sex: TabularScenario, small_mlp: TrainedTabularModel
) -> None:
    again = train_tabular_model(
        "mlp", sex.train_x, sex.train_y, seed=0, mlp=MLPConfig(hidden=(32,), epochs=2)
    )
    x = sex.x[:100]
    t1 = as_target(sex, small_mlp)
    t2 = as_target(sex, again)
    np.testing.assert_array_equal(t1.predict(x), t2.predict(x))
    assert isinstance(t1, TorchTarget)


def test_onnx_target_gives_the_same_inference(
    sex: TabularScenario, small_mlp: TrainedTabularModel, tmp_path: Path
) -> None:
    path, _ = save_tabular_model(small_mlp.model, tmp_path / "new" / "mlp.onnx", sex.encoder)
    onnx_target = load_tabular_target(path, encoder=sex.encoder)
    assert isinstance(onnx_target, OnnxTarget)
    request, _ = sex.request("members", max_rows=300, seed=0)
    local = FredriksonMAP().run(as_target(sex, small_mlp), request)
    remote = FredriksonMAP().run(onnx_target, request)
    np.testing.assert_allclose(remote.scores, local.scores, atol=1e-4)
    assert np.mean(remote.predictions == local.predictions) > 0.99
    assert remote.queries == onnx_target.queries == 600
    with pytest.raises(InvalidParameterError, match="saved as ONNX"):
        save_tabular_model(small_mlp.model, tmp_path / "mlp.skops", sex.encoder)


def test_http_target_over_a_real_loopback_server(
    sex: TabularScenario, sex_tree: TrainedTabularModel
) -> None:
    n_features = sex.encoder.n_features
    app = create_model_app(
        sex_tree.model.predict_proba, input_shape=(n_features,), num_classes=2, max_batch=256
    )
    request, _ = sex.request("members", max_rows=150, seed=0)
    local = CSMIA().run(as_target(sex, sex_tree), request)
    with (
        serve_in_thread(app) as base,
        HttpTarget(
            base + PREDICT_PATH, num_classes=2, input_shape=(n_features,), max_batch=256
        ) as target,
    ):
        remote = CSMIA().run(target, request)
        assert target.requests_sent == 2  # 300 candidate rows, 256 per request
    np.testing.assert_array_equal(remote.predictions, local.predictions)
    assert remote.queries == 300
    assert server_stats(app).served_inputs == 300


def test_tabular_target_checks_the_width(
    sex: TabularScenario, sex_tree: TrainedTabularModel
) -> None:
    with pytest.raises(DataError, match="takes 107 input features, but the data encode to 50"):
        tabular_target(sex_tree.model, n_features=50, num_classes=2)
