"""Training-time defences: API, validation, determinism, caching, and the mechanics of each method.

Fast: digits (8x8) with short recipes; the leakage directions on the faces are in
``test_training_faces.py`` (slow).
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from invguard.data import ImageDataset, load_att_faces_with_auxiliary
from invguard.defenses import _hsic
from invguard.defenses._dp import check_opacus_compatible
from invguard.defenses.training import (
    DPSGD,
    MID,
    TRAINING_DEFENSES,
    BiDO,
    DefendedModel,
    LabelSmoothing,
    TrainingDefense,
    TransferLearning,
    load_att_faces_public,
)
from invguard.errors import DataError, InvalidParameterError, ModelError
from invguard.models import FeatureClassifier, ModelCache, TrainConfig, build_model, train_target
from invguard.targets import TorchTarget

FAST = TrainConfig(epochs=3)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _no_hooks(model: nn.Module) -> bool:
    return not any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules()
    ) and not any(hasattr(p, "grad_sample") for p in model.parameters())


def _split(data: ImageDataset, classes: range, name: str) -> ImageDataset:
    """The images of ``classes``, relabelled from 0."""
    lo = classes.start

    def pick(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = (y >= lo) & (y < classes.stop)
        return x[keep], (y[keep] - lo).astype(np.int64)

    xtr, ytr = pick(data.x_train, data.y_train)
    xte, yte = pick(data.x_test, data.y_test)
    return ImageDataset(name, xtr, ytr, xte, yte, data.class_names[lo : classes.stop])


# -- the API -------------------------------------------------------------------------------------


def test_registry_and_keyword_only_frozen_configs() -> None:
    assert set(TRAINING_DEFENSES) == {
        "dp-sgd",
        "label-smoothing",
        "mid",
        "bido",
        "transfer-learning",
    }
    assert all(issubclass(c, TrainingDefense) for c in TRAINING_DEFENSES.values())
    with pytest.raises(TypeError):
        DPSGD(1.0)  # type: ignore[call-arg]
    d = DPSGD(epsilon=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.epsilon = 2.0  # type: ignore[misc]
    assert BiDO() == BiDO(lambda_x=0.05, lambda_y=0.5, sigma=5.0)  # the paper's weights


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: DPSGD(epsilon=0), "The 'epsilon' parameter must be a float > 0.0, got 0.0"),
        (lambda: DPSGD(epsilon=-1.0), "The 'epsilon' parameter must be a float > 0.0, got -1.0"),
        (lambda: DPSGD(epsilon=float("inf")), "must be a finite float > 0, got inf"),
        (
            lambda: DPSGD(epsilon="8"),  # type: ignore[arg-type]
            "The 'epsilon' parameter must be a float, got str '8'",
        ),
        (
            lambda: DPSGD(epsilon=1.0, delta=0.0),
            "The 'delta' parameter must be a float in the range (0.0, 1.0), got 0.0",
        ),
        (
            lambda: DPSGD(epsilon=1.0, max_grad_norm=0),
            "The 'max_grad_norm' parameter must be a float > 0.0, got 0.0",
        ),
        (lambda: DPSGD(epsilon=1.0, epochs=0), "The 'epochs' parameter must be an int >= 1, got 0"),
        (
            lambda: DPSGD(epsilon=1.0, optimizer="rmsprop"),
            "The 'optimizer' parameter must be one of 'adam', 'sgd', got 'rmsprop'",
        ),
        (
            lambda: LabelSmoothing(alpha=1.0),
            "The 'alpha' parameter must be a float in the range [-10.0, 1.0), got 1.0",
        ),
        (
            lambda: LabelSmoothing(alpha=-0.1, schedule="linear"),
            "The 'schedule' parameter must be one of 'paper', 'constant', got 'linear'",
        ),
        (
            lambda: LabelSmoothing(alpha=0.1, recipe=TrainConfig(label_smoothing=0.2)),
            "The 'recipe' parameter must have label_smoothing=0.0 (the defence sets it), got 0.2",
        ),
        (lambda: MID(beta=-0.1), "The 'beta' parameter must be a float >= 0.0, got -0.1"),
        (
            lambda: MID(beta=0.1, bottleneck=0),
            "The 'bottleneck' parameter must be an int >= 1, got 0",
        ),
        (
            lambda: MID(beta=0.1, recipe={"epochs": 3}),  # type: ignore[arg-type]
            "The 'recipe' parameter must be a TrainConfig or None, got dict",
        ),
        (lambda: BiDO(lambda_x=-1.0), "The 'lambda_x' parameter must be a float >= 0.0, got -1.0"),
        (lambda: BiDO(sigma=0.0), "The 'sigma' parameter must be a float > 0.0, got 0.0"),
        (lambda: TransferLearning(freeze=-1), "The 'freeze' parameter must be an int >= 0, got -1"),
        (
            lambda: TransferLearning(freeze=1.5),  # type: ignore[arg-type]
            "The 'freeze' parameter must be an int, got float 1.5",
        ),
    ],
)
def test_parameters_are_validated_scikit_learn_style(
    make: Callable[[], object], message: str
) -> None:
    with pytest.raises(InvalidParameterError, match=re.escape(message)):
        make()


def test_train_time_validation_happens_before_any_training(digits: ImageDataset) -> None:
    with pytest.raises(InvalidParameterError, match=re.escape("The 'arch' parameter must be one")):
        MID(beta=0.1).train(digits, "resnet")
    with pytest.raises(
        InvalidParameterError, match=re.escape("'seed' parameter must be an int >=")
    ):
        MID(beta=0.1).train(digits, "mlp", seed=-1)
    with pytest.raises(
        InvalidParameterError,
        match=re.escape(
            "The 'delta' parameter must be a float < 1/n = 0.000795 for the 1258 training images"
        ),
    ):
        DPSGD(epsilon=1.0, delta=0.01).train(digits, "softmax")
    with pytest.raises(
        InvalidParameterError, match="BiDO constrains hidden layers and architecture 'softmax'"
    ):
        BiDO().train(digits, "softmax")
    with pytest.raises(InvalidParameterError, match="transfer learning needs labelled public"):
        TransferLearning().train(digits, "mlp")


def test_opacus_incompatible_layers_are_refused_with_opacus_explanation() -> None:
    from opacus.validators import ModuleValidator

    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10)
    )
    opacus_says = " ".join(str(ModuleValidator.validate(model)[0]).split())
    with pytest.raises(ModelError) as info:
        check_opacus_compatible(model, "my model")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(
        "my model cannot be trained with DP-SGD: Opacus rejects 1 layer (1 (BatchNorm2d)): "
    )
    assert opacus_says in msg
    assert "BatchNorm cannot support training with differential privacy" in msg
    check_opacus_compatible(ModuleValidator.fix(model))  # GroupNorm instead: accepted


def test_dp_sgd_refuses_the_batch_norm_architecture(
    digits: ImageDataset, tmp_path: pathlib.Path
) -> None:
    cache = ModelCache(tmp_path)
    with pytest.raises(ModelError) as info:
        DPSGD(epsilon=1.0).train(digits, "evalnet", cache=cache)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(
        "architecture 'evalnet' cannot be trained with DP-SGD: Opacus rejects 9 layers "
        "(features.2 (BatchNorm2d), features.4.body.1 (BatchNorm2d), features.4.body.4 "
        "(BatchNorm2d) and 6 more): BatchNorm cannot support training with differential privacy."
    )
    assert not (cache.root / "models").exists()  # refused before training


# -- determinism, caching, the deployed model ---------------------------------------------------


@pytest.fixture(scope="module")
def defence_cache(tmp_path_factory: pytest.TempPathFactory) -> ModelCache:
    return ModelCache(tmp_path_factory.mktemp("defence-cache"))


@pytest.fixture(scope="module")
def mid_digits(digits: ImageDataset, defence_cache: ModelCache) -> DefendedModel:
    return MID(beta=0.01, recipe=FAST).train(digits, "mlp", seed=3, cache=defence_cache)


def test_training_is_deterministic_for_a_seed_and_cached(
    digits: ImageDataset, mid_digits: DefendedModel, defence_cache: ModelCache
) -> None:
    defense = MID(beta=0.01, recipe=FAST)
    first = mid_digits
    assert not first.from_cache
    cache = defence_cache
    assert cache.path(first.cache_key).is_file()
    again = defense.train(digits, "mlp", seed=3, cache=cache)
    assert again.from_cache
    assert again.cache_key == first.cache_key
    assert _same_weights(again.model, first.model)
    assert (again.test_accuracy, again.train_accuracy, again.facts) == (
        first.test_accuracy,
        first.train_accuracy,
        first.facts,
    )
    fresh = defense.train(digits, "mlp", seed=3)  # no cache: trained again, same weights
    assert not fresh.from_cache
    assert _same_weights(fresh.model, first.model)
    assert not _same_weights(defense.train(digits, "mlp", seed=4).model, first.model)
    # a damaged entry is retrained, never trusted
    cache.path(first.cache_key).write_bytes(b"not a safetensors file")
    repaired = defense.train(digits, "mlp", seed=3, cache=cache)
    assert not repaired.from_cache
    assert _same_weights(repaired.model, first.model)
    assert defense.train(digits, "mlp", seed=3, cache=cache).from_cache
    # the key covers the defence's parameters
    other = MID(beta=0.02, recipe=FAST).train(digits, "mlp", seed=3, cache=cache)
    assert not other.from_cache
    assert other.cache_key != first.cache_key


def test_mid_deploys_the_deterministic_mean_path(
    digits: ImageDataset, mid_digits: DefendedModel
) -> None:
    model = mid_digits.model
    assert type(model) is FeatureClassifier
    assert mid_digits.facts["bottleneck"] == 500  # half the MLP's 1000 features
    assert mid_digits.facts["kl_nats_last_epoch"] > 0
    x = torch.from_numpy(digits.x_test[:16])
    assert torch.equal(model(x), model(x))
    assert model.embed(x).shape == (16, 500)
    assert set(model.state_dict()) == {
        "features.0.1.weight",
        "features.0.1.bias",
        "features.1.weight",
        "features.1.bias",
        "head.weight",
        "head.bias",
    }
    target = TorchTarget(model, input_shape=digits.image_shape)
    probs = target.predict(digits.x_test[:8])
    assert probs.shape == (8, 10)
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert mid_digits.test_accuracy is not None
    assert mid_digits.test_accuracy > 0.5  # 3 epochs; chance is 0.1


def test_label_smoothing_zero_reproduces_the_reference_recipe(digits: ImageDataset) -> None:
    reference = train_target(digits, "mlp", config=FAST, seed=1)
    defended = LabelSmoothing(alpha=0.0, recipe=FAST).train(digits, "mlp", seed=1)
    assert _same_weights(reference.model, defended.model)
    assert defended.test_accuracy == reference.test_accuracy


def test_negative_smoothing_follows_the_authors_schedule() -> None:
    # Struppek et al.'s ls_scheduler for 100 epochs: none before epoch 50, alpha * (e + 1 - 50) / 50
    # until epoch 74, then alpha
    neg = LabelSmoothing(alpha=-0.05)
    expected = [0.0] * 50 + [-0.05 * (e + 1 - 50) / 50 for e in range(50, 75)] + [-0.05] * 25
    assert [neg.factor(e, 100) for e in range(100)] == pytest.approx(expected)
    assert [neg.factor(e, 60) for e in (29, 30, 44, 45, 59)] == pytest.approx(
        [0.0, -0.05 / 30, -0.025, -0.05, -0.05]
    )
    assert LabelSmoothing(alpha=0.1).factor(0, 100) == 0.1  # positive: from the start
    assert LabelSmoothing(alpha=-0.05, schedule="constant").factor(0, 100) == -0.05


def test_dp_sgd_is_seeded_reports_epsilon_and_returns_a_plain_module(
    digits: ImageDataset,
) -> None:
    dp = DPSGD(epsilon=2.0, epochs=2)
    a = dp.train(digits, "softmax", seed=0)
    b = dp.train(digits, "softmax", seed=0)
    c = dp.train(digits, "softmax", seed=1)
    assert _same_weights(a.model, b.model)
    assert not _same_weights(a.model, c.model)
    f = a.facts
    assert 1.9 < f["epsilon_spent"] <= 2.0
    assert f["accountant"] == "rdp"
    assert f["delta"] == 1e-5
    assert f["noise_multiplier"] > 0.5
    assert f["sample_rate"] == pytest.approx(64 / 1258, rel=0.02)
    assert f["steps"] > 0
    assert type(a.model) is FeatureClassifier
    assert _no_hooks(a.model)
    TorchTarget(a.model, input_shape=digits.image_shape).predict(digits.x_test[:4])


# -- BiDO ----------------------------------------------------------------------------------------


def test_hsic_measures_dependence() -> None:
    # more samples than dimensions: with m <= d the normalised estimator tends to the effective
    # rank of the latent's Gram matrix, whatever the dependence (see invguard.defenses._hsic)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 2, generator=g)
    dependent = _hsic.normalized_hsic(torch.sin(6 * x), x, 5.0)
    independent = _hsic.normalized_hsic(torch.rand(64, 2, generator=g), x, 5.0)
    assert float(dependent) > 5 * float(independent)
    assert float(_hsic.normalized_hsic(x, torch.sin(6 * x), 5.0)) == pytest.approx(
        float(dependent), rel=1e-6
    )
    k = _hsic.gaussian_gram(x, 5.0)
    assert torch.allclose(torch.diagonal(k), torch.ones(64, dtype=torch.float64))


def test_bido_constrains_the_hidden_activations(digits: ImageDataset) -> None:
    assert [n for n, _ in _hsic.hidden_layers(build_model("mlp", (1, 8, 8), 10))] == ["features.2"]
    assert [n for n, _ in _hsic.hidden_layers(build_model("cnn", (1, 8, 8), 10))] == [
        "features.1",
        "features.4",
        "features.8",
    ]
    d = BiDO(lambda_x=1.0, lambda_y=1.0, recipe=FAST).train(digits, "mlp", seed=0)
    assert d.facts["hidden_layers"] == ["features.2"]
    assert 0 < d.facts["hsic_xz_last_epoch"] < 32
    assert 0 < d.facts["hsic_yz_last_epoch"] < 32
    assert _no_hooks(d.model)  # the recorder's hooks are gone
    assert type(d.model) is FeatureClassifier


# -- transfer learning ---------------------------------------------------------------------------


def test_transfer_learning_keeps_the_frozen_layers_public(digits: ImageDataset) -> None:
    private = _split(digits, range(0, 5), "digits-0-4")
    public = _split(digits, range(5, 10), "digits-5-9")
    short = TransferLearning(freeze=1, pretrain=FAST, recipe=TrainConfig(epochs=1))
    longer = TransferLearning(freeze=1, pretrain=FAST, recipe=FAST)
    a = short.train(private, "mlp", seed=0, auxiliary=public)
    b = longer.train(private, "mlp", seed=0, auxiliary=public)
    assert a.facts["frozen_layers"] == ["features.1"]
    assert a.facts["trained_layers"] == ["head"]
    assert a.facts["public_classes"] == 5
    # the frozen layer is the pre-trained public layer whatever the fine-tuning; the head is not
    wa, wb = a.model.state_dict(), b.model.state_dict()
    assert torch.equal(wa["features.1.weight"], wb["features.1.weight"])
    assert not torch.equal(wa["head.weight"], wb["head.weight"])
    full = TransferLearning(freeze=0, pretrain=FAST, recipe=FAST).train(
        private, "mlp", seed=0, auxiliary=public
    )
    assert full.facts["frozen_layers"] == []
    assert not torch.equal(full.model.state_dict()["features.1.weight"], wb["features.1.weight"])
    assert all(p.requires_grad for p in b.model.parameters())
    assert b.test_accuracy is not None
    assert b.test_accuracy > 0.4  # 3 + 3 epochs, head only; chance is 0.2


def test_transfer_learning_checks_its_public_data(digits: ImageDataset) -> None:
    private = _split(digits, range(0, 5), "digits-0-4")
    public = _split(digits, range(5, 10), "digits-5-9")
    with pytest.raises(
        InvalidParameterError,
        match=re.escape(
            "The 'freeze' parameter must be an int in [0, 1] for architecture 'mlp', whose layers "
            "are features.1, head (the head is always trained), got 2"
        ),
    ):
        TransferLearning(freeze=2).train(private, "mlp", auxiliary=public)
    with pytest.raises(InvalidParameterError, match="must be public data, not the private"):
        TransferLearning().train(private, "mlp", auxiliary=private)
    with pytest.raises(InvalidParameterError, match="must be an ImageDataset of labelled public"):
        TransferLearning().train(private, "mlp", auxiliary=public.x_train)  # type: ignore[arg-type]
    wide = ImageDataset(
        "wide", np.zeros((4, 1, 8, 9), np.float32), np.zeros(4, np.int64),
        np.zeros((0, 1, 8, 9), np.float32), np.zeros(0, np.int64), ("a",),
    )  # fmt: skip
    with pytest.raises(DataError, match=r"has images of shape \(1, 8, 9\), the private data"):
        TransferLearning().train(private, "mlp", auxiliary=wide)


def test_public_faces_are_the_auxiliary_faces_with_labels() -> None:
    public = load_att_faces_public()
    _, aux = load_att_faces_with_auxiliary()
    assert public.x_train.shape == (100, 1, 56, 46)
    assert np.array_equal(public.x_train, aux)
    assert public.class_names == tuple(f"s{i}" for i in range(31, 41))
    assert np.array_equal(np.bincount(public.y_train), np.full(10, 10))
    assert len(public.y_test) == 0
