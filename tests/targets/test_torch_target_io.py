"""What a PyTorch model returns and takes: output kinds, shape checks, and the caller's model left
as it was."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import invguard.api as api
import invguard.judges.reference as reference
from invguard.api import invert
from invguard.attacks import MIFace
from invguard.data import ImageDataset
from invguard.errors import InvalidParameterError
from invguard.models import ModelCache, TrainedModel
from invguard.targets import TorchTarget
from invguard.targets.pytorch import OutputKind
from tests.models.user_cnn import SoftmaxEnded, UserCNN, train_user_cnn

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
    monkeypatch.setattr(reference, "train_evaluation_model", fake)
    with pytest.raises(_StopError):
        api.reference_evaluator(digits)
    assert isinstance(seen[0], ModelCache)
    assert seen[0].root == tmp_path
    given = ModelCache(tmp_path / "mine")
    with pytest.raises(_StopError):
        api.reference_evaluator(digits, cache=given)
    assert seen[1] is given


MEAN3, STD3 = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_normalize_gives_the_model_on_normalised_inputs(digits: ImageDataset) -> None:
    mean, std = 0.3, 0.25
    x_train = (digits.x_train - mean) / std  # the user trained on normalised inputs
    model = train_user_cnn(x_train, digits.y_train, epochs=2)
    x = digits.x_test[:64]
    wrapped = TorchTarget(model, input_shape=SHAPE, normalize=([mean], [std]))
    plain = TorchTarget(model, input_shape=SHAPE)
    np.testing.assert_allclose(
        wrapped.predict(x), plain.predict(((x - mean) / std).astype(np.float32)), atol=1e-5
    )
    assert (wrapped.predict(x).argmax(1) == digits.y_test[:64]).mean() > 0.8
    assert wrapped.normalize is not None
    assert wrapped.normalize.std == (0.25,)


def test_gradients_are_with_respect_to_pixels() -> None:
    torch.manual_seed(0)
    model = UserCNN(channels=3).eval()
    shape = (3, 8, 8)
    wrapped = TorchTarget(model, input_shape=shape, normalize=(MEAN3, STD3))
    plain = TorchTarget(model, input_shape=shape)
    x = torch.rand(4, *shape)
    classes = torch.tensor([0, 3, 5, 9])
    mean = torch.tensor(MEAN3).view(1, 3, 1, 1)
    std = torch.tensor(STD3).view(1, 3, 1, 1)
    logits, grad = wrapped.class_gradient(x, classes)
    ref_logits, ref_grad = plain.class_gradient((x - mean) / std, classes)
    torch.testing.assert_close(logits, ref_logits)
    torch.testing.assert_close(grad, ref_grad / std)  # chain rule: d/dx = d/dz * 1/std
    xg = x.clone().requires_grad_(True)
    out = wrapped.differentiable_logits(xg)
    out.gather(1, classes.view(-1, 1)).sum().backward()  # type: ignore[no-untyped-call]
    _, logit_grad = wrapped.class_gradient(x, classes, quantity="logit")
    assert xg.grad is not None
    torch.testing.assert_close(xg.grad, logit_grad)


def test_miface_on_a_normalised_model_reconstructs_pixels() -> None:
    torch.manual_seed(0)
    model = UserCNN(channels=3).eval()
    result = invert(
        model,
        input_shape=(3, 8, 8),
        normalize=(MEAN3, STD3),
        attack=MIFace(max_iterations=10),
        classes=[0, 1],
        rng=0,
    )
    rec = result.reconstructions
    assert rec.shape == (2, 3, 8, 8)
    assert np.isfinite(rec).all()
    assert rec.min() >= 0.0
    assert rec.max() <= 1.0


@pytest.mark.parametrize(
    ("normalize", "needle"),
    [
        ((MEAN3, STD3), "mean must have 1 value for inputs with 1 channel, got 3"),
        (([0.5], [0.0]), "std must be > 0"),
        (([0.5], [-1.0]), "std must be > 0"),
        (([float("nan")], [0.5]), "must hold finite numbers"),
        (([0.5], ["a"]), "must hold finite numbers"),
        ((0.5,), "must be (mean, std)"),
        ("0.5/0.5", "must be (mean, std)"),
        ({"mean": [0.5]}, "keys 'mean' and 'std'"),
    ],
)
def test_bad_normalize_is_one_line(normalize: object, needle: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        TorchTarget(UserCNN().eval(), input_shape=SHAPE, normalize=normalize)  # type: ignore[arg-type]
    text = str(info.value)
    assert "\n" not in text
    assert "'normalize'" in text
    assert needle in text


def test_describe_gives_the_declared_io() -> None:
    model = UserCNN(channels=3).eval()
    facts = TorchTarget(
        model, input_shape=(3, 8, 8), output="logits", normalize={"mean": [0.5], "std": STD3}
    ).describe(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"])
    assert facts == {
        "input_shape": [3, 8, 8],
        "value_range": [0.0, 1.0],
        "output": "logits",
        "num_classes": 10,
        "normalize": {"mean": [0.5, 0.5, 0.5], "std": list(STD3)},
        "class_names": list("abcdefghij"),
    }
    assert "normalize" not in TorchTarget(model, input_shape=(3, 8, 8)).describe()
