"""OnnxTarget and export_torch_to_onnx on the digits MLP."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from invguard.data import ImageDataset
from invguard.errors import InvalidParameterError, MissingDependencyError, ModelError, TargetError
from invguard.models import TrainedModel
from invguard.targets import Capability, OutputSpec, QueryBudgetExceededError, Target, TorchTarget
from invguard.targets.onnx import OnnxTarget, export_torch_to_onnx


@pytest.fixture(scope="module")
def digits_onnx(digits_mlp: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_torch_to_onnx(
        digits_mlp.model, (1, 8, 8), tmp_path_factory.mktemp("onnx") / "digits-mlp.onnx"
    )


def test_matches_torch_with_a_dynamic_batch(
    digits: ImageDataset, digits_mlp: TrainedModel, digits_onnx: Path
) -> None:
    t = OnnxTarget(digits_onnx, batch_size=100)
    assert isinstance(t, Target)
    assert t.input_shape == (1, 8, 8)
    assert t.num_classes == 10
    assert t.input_name == "input"
    assert Capability.LOGITS in t.capabilities
    assert Capability.PROBABILITIES in t.capabilities
    ref = TorchTarget(digits_mlp.model, input_shape=(1, 8, 8))
    x = digits.x_test
    assert np.abs(t.predict(x) - ref.predict(x)).max() < 1e-5
    assert np.abs(t.logits(x[:7]) - ref.logits(x[:7])).max() < 1e-4
    assert t.predict(x[0]).shape == (1, 10)  # a single image
    assert t.queries == len(x) + 7 + 1
    from_bytes = OnnxTarget(digits_onnx.read_bytes(), input_shape=(1, 8, 8))
    assert np.array_equal(from_bytes.predict(x[:5]), t.predict(x[:5]))


def test_probability_graphs_output_specs_and_budget(
    digits: ImageDataset, digits_mlp: TrainedModel, tmp_path: Path
) -> None:
    with_softmax = nn.Sequential(digits_mlp.model, nn.Softmax(dim=1))
    path = export_torch_to_onnx(with_softmax, (1, 8, 8), tmp_path / "probs.onnx")
    x = digits.x_test[:30]
    ref = TorchTarget(digits_mlp.model, input_shape=(1, 8, 8)).predict(x)
    probs = OnnxTarget(path, model_output="probabilities")
    assert np.abs(probs.predict(x) - ref).max() < 1e-5
    assert Capability.LOGITS not in probs.capabilities
    with pytest.raises(TargetError, match="logits are not available"):
        probs.logits(x)
    top = OnnxTarget(path, model_output="probabilities", output=OutputSpec(top_k=3))
    assert ((top.predict(x) > 0).sum(1) == 3).all()
    labels = OnnxTarget(path, model_output="probabilities", output=OutputSpec(scores=False))
    assert np.array_equal(labels.predict(x).argmax(1), ref.argmax(1))
    assert labels.capabilities == frozenset({Capability.LABELS})
    budget = OnnxTarget(path, model_output="probabilities", query_budget=10)
    budget.predict(x[:10])
    with pytest.raises(QueryBudgetExceededError):
        budget.predict(x[:1])
    assert budget.queries == 10
    logits_as_probs = OnnxTarget(
        export_torch_to_onnx(digits_mlp.model, (1, 8, 8), tmp_path / "logits.onnx"),
        model_output="probabilities",
    )
    with pytest.raises(TargetError, match="does it return logits"):
        logits_as_probs.predict(x)


def test_fixed_batch_graphs_are_padded(
    digits: ImageDataset, digits_mlp: TrainedModel, tmp_path: Path
) -> None:
    path = tmp_path / "fixed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            digits_mlp.model,
            (torch.zeros(4, 1, 8, 8),),
            str(path),
            input_names=["pixels"],
            dynamo=False,
        )
    t = OnnxTarget(path)
    assert t.input_name == "pixels"
    x = digits.x_test[:10]  # 4 + 4 + 2 (padded to 4)
    ref = TorchTarget(digits_mlp.model, input_shape=(1, 8, 8)).predict(x)
    assert np.abs(t.predict(x) - ref).max() < 1e-5
    assert t.queries == 10


def test_errors_are_named(
    digits_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        OnnxTarget(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(ModelError, match=r"cannot load ONNX model file .*bad\.onnx"):
        OnnxTarget(bad)
    with pytest.raises(TargetError, match=r"does not fit input_shape \(1, 9, 9\)"):
        OnnxTarget(digits_onnx, input_shape=(1, 9, 9))
    with pytest.raises(TargetError, match="returns 10 class scores, but num_classes=3"):
        OnnxTarget(digits_onnx, num_classes=3)
    with pytest.raises(InvalidParameterError, match="'model_output' parameter must be one of"):
        OnnxTarget(digits_onnx, model_output="softmax")  # type: ignore[arg-type]
    with pytest.raises(TargetError, match="has no output 'probs'"):
        OnnxTarget(digits_onnx, output_name="probs")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'invguard\[onnx\]'"):
        OnnxTarget(digits_onnx)
