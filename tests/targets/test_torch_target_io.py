"""What a PyTorch model returns and takes: output kinds, shape checks, and the caller's model left
as it was."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import invguard.api as api
from invguard.api import invert
from invguard.attacks import MIFace
from invguard.data import ImageDataset
from invguard.errors import InvalidParameterError
from invguard.models import ModelCache, TrainedModel
from invguard.targets import TorchTarget
from invguard.targets.pytorch import OutputKind
from tests.models.user_cnn import SoftmaxEnded, UserCNN

SHAPE = (1, 8, 8)


class _LogSoftmaxEnded(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.inner(x), dim=1)


def test_a_softmax_ended_model_reports_the_right_confidence(
    digits_mlp: TrainedModel, digits: ImageDataset, caplog: pytest.LogCaptureFixture
) -> None:
    logits_model = digits_mlp.model
    x = digits.x_test[:16]
    truth = TorchTarget(logits_model, input_shape=SHAPE).predict(x)
    probs = SoftmaxEnded(logits_model)
    with caplog.at_level(logging.WARNING, logger="invguard.targets.pytorch"):
        wrong = TorchTarget(probs, input_shape=SHAPE)
    assert "end in softmax" in caplog.text
    assert "output='probabilities'" in caplog.text
    assert wrong.predict(x).max() < 0.5 < truth.max()  # softmax of probabilities: flattened
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="invguard.targets.pytorch"):
        right = TorchTarget(probs, input_shape=SHAPE, output="probabilities")
        log_right = TorchTarget(
            _LogSoftmaxEnded(logits_model), input_shape=SHAPE, output="log_probabilities"
        )
    assert caplog.text == ""
    np.testing.assert_allclose(right.predict(x), truth, atol=1e-5)
    np.testing.assert_allclose(log_right.predict(x), truth, atol=1e-5)
    kinds: list[tuple[torch.nn.Module, OutputKind]] = [
        (logits_model, "logits"),
        (probs, "probabilities"),
    ]
    runs = [
        invert(m, input_shape=SHAPE, output=kind, attack=MIFace(max_iterations=20), classes=[1, 4])
        for m, kind in kinds
    ]
    np.testing.assert_allclose(runs[1].target_confidence, runs[0].target_confidence, atol=1e-3)
    np.testing.assert_allclose(runs[1].reconstructions, runs[0].reconstructions, atol=1e-3)


def test_wrong_input_shape_or_class_count_is_one_line(digits_mlp: TrainedModel) -> None:
    with pytest.raises(InvalidParameterError) as info:
        TorchTarget(digits_mlp.model, input_shape=(1, 9, 9))
    text = str(info.value)
    assert "\n" not in text
    assert "(1, 9, 9)" in text
    assert "expected 64 input values, given 81" in text
    with pytest.raises(InvalidParameterError) as info:
        TorchTarget(UserCNN(channels=1), input_shape=(3, 8, 8))
    assert "expected 1 channels, given 3" in str(info.value)
    with pytest.raises(InvalidParameterError, match="expected 3 classes, given a model with 10"):
        TorchTarget(digits_mlp.model, input_shape=SHAPE, num_classes=3)
    with pytest.raises(InvalidParameterError, match="does not accept inputs of shape"):
        invert(digits_mlp.model, input_shape=(1, 9, 9))


def test_invert_gives_the_model_its_mode_back() -> None:
    torch.manual_seed(0)
    model = UserCNN().train()
    model.body[1].eval()  # a mixed state, e.g. frozen batch norm during fine-tuning
    before = [m.training for m in model.modules()]
    result = invert(model, input_shape=SHAPE, attack=MIFace(max_iterations=3), classes=[0])
    assert result.reconstructions.shape == (1, *SHAPE)
    assert [m.training for m in model.modules()] == before
    model.eval()
    invert(model, input_shape=SHAPE, attack=MIFace(max_iterations=3), classes=[0])
    assert not any(m.training for m in model.modules())


def test_reference_evaluator_caches_by_default(
    digits: ImageDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[object] = []

    class _StopError(Exception):
        pass

    def fake(dataset: ImageDataset, **kw: object) -> None:
        seen.append(kw["cache"])
        raise _StopError

    monkeypatch.setenv("INVGUARD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(api, "train_evaluation_model", fake)
    with pytest.raises(_StopError):
        api.reference_evaluator(digits)
    assert isinstance(seen[0], ModelCache)
    assert seen[0].root == tmp_path
    given = ModelCache(tmp_path / "mine")
    with pytest.raises(_StopError):
        api.reference_evaluator(digits, cache=given)
    assert seen[1] is given
