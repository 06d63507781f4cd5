"""The public look-alike calibration row: what public data alone scores with closed-set judges."""

from __future__ import annotations

import numpy as np

from invguard.data import ImageDataset
from invguard.judges.calibration import public_lookalikes
from invguard.judges.evaluate import run_calibration
from invguard.models import TrainedModel
from invguard.targets import TorchTarget


def test_lookalikes_are_the_target_ranked_public_images(
    digits: ImageDataset, digits_mlp: TrainedModel
) -> None:
    target = TorchTarget(digits_mlp.model, input_shape=digits.image_shape)
    public = digits.x_test[digits.y_test >= 5]  # digits 5-9 stand in for the attacker's images
    classes = np.arange(5)
    picked = public_lookalikes(target, public, classes)
    held_out = public[1::2]  # the half that an open-set panel never sees
    probs = target.predict(held_out)
    assert picked.shape == (5, *digits.image_shape)
    for c in classes:
        assert np.array_equal(picked[c], held_out[probs[:, c].argmax()])
    cal = run_calibration(digits, classes, target, public=public)
    assert np.array_equal(cal.images["public_lookalike"], picked)
    without = run_calibration(digits, classes, target)
    assert "public_lookalike" not in without.images
    assert without.notes["public_lookalike"].startswith("not available")
