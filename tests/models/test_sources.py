"""The shared model-source schema and loader (invguard.models.sources), as the assessment and the
gateway configs use it: one loader, one-line errors that name the field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import save_file

from invguard.assess.config import ConfigError, PytorchTarget
from invguard.assess.config import HttpTarget as AssessHttp
from invguard.assess.config import SklearnTarget as AssessSklearn
from invguard.config_errors import ConfigError as SharedConfigError
from invguard.config_fields import HttpSource, SklearnSource, TorchSource
from invguard.data import ImageDataset
from invguard.gateway.config import GatewayConfigError, PytorchModel, UpstreamModel
from invguard.models import TrainedModel
from invguard.models.sources import (
    SourceContext,
    expand_headers,
    load_model_source,
    load_torch_file,
)
from invguard.targets import Capability, SklearnTarget, TorchTarget, save_sklearn_model


@pytest.fixture
def weights(tmp_path: Path, digits_mlp: TrainedModel) -> Path:
    path = tmp_path / "digits.safetensors"
    save_file({k: v.contiguous() for k, v in digits_mlp.model.state_dict().items()}, str(path))
    return path


def context(tmp_path: Path, where: str = "systems[0].target") -> SourceContext:
    return SourceContext(where, lambda p: p if p.is_absolute() else tmp_path / p, (1, 8, 8), 10)


def test_one_error_type_for_both_configs() -> None:
    assert ConfigError is SharedConfigError
    assert issubclass(GatewayConfigError, SharedConfigError)


def test_both_configs_share_the_source_fields() -> None:
    assert issubclass(PytorchTarget, TorchSource)
    assert issubclass(PytorchModel, TorchSource)
    assert issubclass(AssessSklearn, SklearnSource)
    assert issubclass(AssessHttp, HttpSource)
    assert issubclass(UpstreamModel, HttpSource)
    # each config keeps its own defaults
    assert AssessHttp(type="http", url="http://x").retries == 3
    up = UpstreamModel(type="upstream", url="http://x", input_shape=(1, 8, 8), num_classes=10)
    assert (up.retries, up.response) == (1, "/predictions")


def test_a_weights_source_from_either_config_loads_the_same_model(
    tmp_path: Path, weights: Path, digits: ImageDataset, digits_mlp: TrainedModel
) -> None:
    ctx = context(tmp_path)
    assess = PytorchTarget(model=Path(weights.name), arch="mlp")
    gateway = PytorchModel(
        type="pytorch", model=Path(weights.name), arch="mlp", input_shape=(1, 8, 8), num_classes=10
    )
    x = digits.x_test[:6]
    expected = TorchTarget(digits_mlp.model, input_shape=(1, 8, 8)).predict(x)
    for source in (assess, gateway):
        target = load_model_source(source, ctx)
        assert isinstance(target, TorchTarget)
        assert Capability.GRADIENTS in target.capabilities
        assert np.allclose(target.predict(x), expected, atol=1e-6)
    _, info = load_torch_file(assess, ctx)
    assert info["kind"] == "reference architecture + weights"


def test_reference_module_and_normalisation(tmp_path: Path, digits_mlp: TrainedModel) -> None:
    source = PytorchTarget.model_validate(
        {"reference": {"arch": "mlp"}, "normalize": {"mean": [0.5], "std": [0.25]}}
    )
    target = load_model_source(source, context(tmp_path), model=digits_mlp.model)
    assert isinstance(target, TorchTarget)
    assert target.normalize is not None
    bad = PytorchTarget.model_validate(
        {"reference": {"arch": "mlp"}, "normalize": {"mean": [0, 0], "std": [1]}}
    )
    with pytest.raises(ConfigError, match=r"^systems\[0\].target.normalize: .*must have 1 value"):
        load_model_source(bad, context(tmp_path), model=digits_mlp.model)


def test_errors_name_the_field(tmp_path: Path, weights: Path) -> None:
    ctx = context(tmp_path, "model")
    with pytest.raises(
        ConfigError, match=r"^model.model: model file not found: .*nope.safetensors"
    ):
        load_model_source(PytorchTarget(model=Path("nope.safetensors"), arch="mlp"), ctx)
    with pytest.raises(ConfigError, match=r"^model.program: .*"):
        load_model_source(PytorchTarget(program=Path(weights.name)), ctx)
    wrong = SourceContext("model", ctx.resolve, (1, 8, 8), 12)
    with pytest.raises(ConfigError, match=r"^model.model: .*does not fit architecture 'mlp'"):
        load_model_source(PytorchTarget(model=Path(weights.name), arch="mlp"), wrong)
    with pytest.raises(ConfigError, match=r"^model.model: model file not found: m.skops"):
        load_model_source(AssessSklearn(type="sklearn", model=Path("m.skops")), ctx)


def test_sklearn_source_with_a_declared_output(tmp_path: Path, digits: ImageDataset) -> None:
    from sklearn.linear_model import LogisticRegression

    from invguard.targets import OutputSpec

    est = LogisticRegression(max_iter=200).fit(
        digits.x_train.reshape(len(digits.x_train), -1), digits.y_train
    )
    save_sklearn_model(est, tmp_path / "lr.skops")
    source = AssessSklearn(type="sklearn", model=Path("lr.skops"))
    target = load_model_source(source, context(tmp_path), output=OutputSpec(top_k=2))
    assert isinstance(target, SklearnTarget)
    scores = target.predict(digits.x_test[:4])
    assert ((scores > 0).sum(axis=1) <= 2).all()


def test_headers_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IG_SOURCE_TOKEN", "t0k3n")
    headers = {"Authorization": "Bearer ${IG_SOURCE_TOKEN}", "X-Plain": "v"}
    assert expand_headers(headers, "model") == {"Authorization": "Bearer t0k3n", "X-Plain": "v"}
    monkeypatch.delenv("IG_SOURCE_TOKEN")
    with pytest.raises(
        ConfigError, match=r"^model.headers.Authorization: environment variable IG_SOURCE_TOKEN"
    ):
        expand_headers(headers, "model")
