from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from invguard.attacks import AttackResult, InversionRequest, MIFace
from invguard.data import ImageDataset
from invguard.errors import InvalidParameterError, TargetError
from invguard.metrics import Evaluator, evaluate_inversion
from invguard.models import TrainedModel
from invguard.targets import Capability, TorchTarget


@pytest.fixture
def target(digits: ImageDataset, digits_mlp: TrainedModel) -> TorchTarget:
    return TorchTarget(digits_mlp.model, input_shape=digits.image_shape)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_iterations", 0, "'max_iterations' parameter must be an int >= 1, got 0"),
        ("step_size", -0.1, "'step_size' parameter must be a float > 0.0, got -0.1"),
        ("loss", "mse", "'loss' parameter must be one of"),
        ("start", "black", "'start' parameter must be one of"),
        ("confidence_threshold", 1.5, "'confidence_threshold' parameter must be a float in"),
        ("patience", 2.5, "'patience' parameter must be an int"),
        ("bounds", (1.0, 0.0), "'bounds' parameter must be"),
    ],
)
def test_config_validation_names_the_parameter(field: str, value: object, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message.replace("(", r"\(")):
        MIFace(**{field: value})  # type: ignore[arg-type]


def test_config_is_frozen_and_keyword_only() -> None:
    cfg = MIFace()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.step_size = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        MIFace(100)  # type: ignore[call-arg]
    assert MIFace.requires == frozenset({Capability.GRADIENTS})


def test_inverts_every_digit_recognisably(
    target: TorchTarget, digits: ImageDataset, digits_evaluator: Evaluator
) -> None:
    result = MIFace().run(target, InversionRequest(), rng=0)
    assert isinstance(result, AttackResult)
    assert result.reconstructions.shape == (10, 1, 8, 8)
    assert result.reconstructions.min() >= 0.0
    assert result.reconstructions.max() <= 1.0
    metrics = evaluate_inversion(result, digits_evaluator, digits)
    assert metrics.summary()["top1_accuracy"] >= 0.9
    assert metrics.summary()["target_confidence"] > 0.9
    # one gradient query per running sample per iteration
    assert result.queries == int(result.iterations.sum())
    assert result.seed == 0


def test_each_sample_stops_on_its_own(target: TorchTarget) -> None:
    result = MIFace(confidence_threshold=0.6, max_iterations=500).run(
        target, InversionRequest(), rng=0
    )
    assert set(result.stop_reasons) == {"confidence"}
    assert (result.target_confidence >= 0.6).all()
    assert len(set(result.iterations.tolist())) > 1
    assert result.queries == int(result.iterations.sum())


def test_batched_inversion_equals_one_class_at_a_time(target: TorchTarget) -> None:
    atk = MIFace(max_iterations=150)
    together = atk.run(target, InversionRequest(), rng=0)
    for cls in (2, 7):
        alone = atk.run(target, InversionRequest(classes=[cls]), rng=0)
        assert alone.iterations[0] == together.iterations[cls]
        assert np.abs(alone.reconstructions[0] - together.reconstructions[cls]).max() < 1e-3


def test_start_points(target: TorchTarget, digits: ImageDataset) -> None:
    one_step = MIFace(max_iterations=1)
    grey = one_step.run(target, InversionRequest(classes=[0, 1]), rng=0)
    assert np.allclose(grey.reconstructions, 0.5)
    aux = digits.x_test[:50]
    mean = dataclasses.replace(one_step, start="mean").run(
        target, InversionRequest(classes=[3], auxiliary=aux), rng=0
    )
    assert np.allclose(mean.reconstructions[0], aux.mean(0), atol=1e-6)
    rand = dataclasses.replace(one_step, start="random")
    a = rand.run(target, InversionRequest(classes=[3]), rng=1)
    b = rand.run(target, InversionRequest(classes=[3]), rng=1)
    c = rand.run(target, InversionRequest(classes=[3]), rng=2)
    assert np.array_equal(a.reconstructions, b.reconstructions)
    assert not np.array_equal(a.reconstructions, c.reconstructions)
    with pytest.raises(InvalidParameterError, match="auxiliary images"):
        dataclasses.replace(one_step, start="mean").run(target, InversionRequest(), rng=0)


def test_denoise_step_and_paper_loss_run_within_bounds(target: TorchTarget) -> None:
    cfg = MIFace(loss="probability", optimizer="sgd", step_size=1.0, denoise_every=5, sharpen=0.5)
    result = cfg.run(target, InversionRequest(classes=[0, 5]), rng=0)
    assert result.reconstructions.min() >= 0.0
    assert result.reconstructions.max() <= 1.0
    assert result.config["loss"] == "probability"


def test_bad_requests_are_named(target: TorchTarget) -> None:
    with pytest.raises(InvalidParameterError, match="class index 12 is out of range"):
        MIFace().run(target, InversionRequest(classes=[1, 12]), rng=0)
    with pytest.raises(InvalidParameterError, match="'rng' parameter"):
        MIFace().run(target, InversionRequest(), rng=-1)


class _LabelOnly:
    capabilities = frozenset({Capability.LABELS})
    num_classes = 10
    input_shape = (1, 8, 8)
    queries = 0

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.zeros((len(x), 10), np.float32)


def test_requires_gradients() -> None:
    with pytest.raises(TargetError, match="needs gradients"):
        MIFace().run(_LabelOnly(), InversionRequest(), rng=0)


def test_budgets_end_the_attack_with_the_best_so_far(target: TorchTarget) -> None:
    limited = TorchTarget(target.model, input_shape=(1, 8, 8), query_budget=205)
    result = MIFace().run(limited, InversionRequest(), rng=0)
    assert set(result.stop_reasons) == {"query_budget"}
    assert result.queries <= 205
    assert limited.queries <= 205
    assert (result.iterations == 20).all()
    assert (result.target_confidence > 0.1).all()
    timed = MIFace(max_iterations=10**6, patience=10**6).run(
        target, InversionRequest(max_seconds=0.3), rng=0
    )
    assert set(timed.stop_reasons) == {"time_budget"}
    assert timed.seconds < 1.5
