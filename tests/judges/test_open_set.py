"""Open-set judges: public look-alikes stop counting as reconstructions; real photos still do."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from invguard.data import ImageDataset
from invguard.errors import InvalidParameterError
from invguard.judges import judge_run, reference_panel
from invguard.judges.calibration import public_lookalikes
from invguard.judges.open_set import (
    PUBLIC_CLASS_NAME,
    RejectPublicJudge,
    open_set_dataset,
    split_public,
)
from invguard.models import ModelCache, train_target
from invguard.targets import TorchTarget


def _digits_0_4(digits: ImageDataset) -> tuple[ImageDataset, np.ndarray]:
    """Digits 0-4 as the private set, all digits 5-9 as the attacker's public images."""
    tr, te = digits.y_train < 5, digits.y_test < 5
    private = dataclasses.replace(
        digits,
        name="digits-0-4",
        x_train=digits.x_train[tr],
        y_train=digits.y_train[tr],
        x_test=digits.x_test[te],
        y_test=digits.y_test[te],
        class_names=digits.class_names[:5],
        _fingerprint=[],
    )
    public = np.concatenate([digits.x_train[~tr], digits.x_test[~te]])
    return private, public


def test_open_set_dataset_adds_one_public_class(digits: ImageDataset) -> None:
    private, public = _digits_0_4(digits)
    judges_half, held_out = split_public(public)
    assert len(judges_half) + len(held_out) == len(public)
    opened = open_set_dataset(private, public)
    assert opened.num_classes == 6
    assert opened.class_names[-1] == PUBLIC_CLASS_NAME
    n_public = int((opened.y_train == 5).sum() + (opened.y_test == 5).sum())
    assert n_public == len(judges_half)
    assert opened.fingerprint() != private.fingerprint()
    with pytest.raises(InvalidParameterError, match="public images"):
        split_public(public[:1])


def test_reject_judge_needs_one_extra_class(digits: ImageDataset) -> None:
    class Fixed:
        name, family, num_classes = "fixed", "classifier", 3

        def scores(self, images: np.ndarray) -> np.ndarray:
            return np.array([[0.1, 0.9, 0.0], [0.1, 0.2, 0.7]])

        def info(self) -> dict[str, str]:
            return {}

    judge = RejectPublicJudge(Fixed(), 2)
    out = judge.scores(np.zeros((2, 1, 8, 8), dtype=np.float32))
    assert out.shape == (2, 2)
    assert out[0].argmax() == 1
    assert np.isneginf(out[1]).all()
    with pytest.raises(InvalidParameterError, match="needs 4"):
        RejectPublicJudge(Fixed(), 3)


@pytest.mark.slow
def test_open_set_panel_rejects_public_lookalikes(
    digits: ImageDataset, model_cache: ModelCache
) -> None:
    private, public = _digits_0_4(digits)
    target = TorchTarget(
        train_target(private, "mlp", seed=0, cache=model_cache).model,
        input_shape=private.image_shape,
    )
    classes = np.arange(5)
    closed, _, _ = reference_panel(private, cache=model_cache)
    opened, _, _ = reference_panel(private, cache=model_cache, public=public)
    lookalikes = public_lookalikes(target, public, classes)
    shut = judge_run(closed, private, lookalikes, classes, target).summary()
    open_ = judge_run(opened, private, lookalikes, classes, target, public=public)
    # the held-out private photos are still recognised by the open-set judges
    held = open_.calibration["held_out"].summary()["verdict_top1"]
    assert held >= 0.8
    assert open_.summary()["verdict_top1"] <= min(0.2, shut["verdict_top1"])
