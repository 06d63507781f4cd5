from __future__ import annotations

import numpy as np

from invguard.attacks import AttackResult
from invguard.data import ImageDataset
from invguard.metrics import Evaluator, evaluate_inversion


def _result(recons: np.ndarray, classes: np.ndarray) -> AttackResult:
    n = len(classes)
    return AttackResult(
        attack="test",
        classes=classes,
        reconstructions=recons.astype(np.float32),
        target_confidence=np.ones(n, np.float32),
        iterations=np.ones(n, np.int64),
        stop_reasons=("test",) * n,
        queries=n,
        seconds=0.0,
        config={},
        seed=0,
    )


def test_private_images_score_perfectly_and_noise_scores_at_chance(
    digits: ImageDataset, digits_evaluator: Evaluator
) -> None:
    # "reconstructions" that are the private images themselves
    perfect = evaluate_inversion(_result(digits.x_train, digits.y_train), digits_evaluator, digits)
    s = perfect.summary()
    assert s["top1_accuracy"] > 0.97
    assert s["knn_distance"] < 1e-4
    assert s["ssim"] > 0.999
    assert s["psnr"] == np.inf
    assert perfect.closer_to_own.mean() > 0.97
    classes = np.arange(10)

    rng = np.random.default_rng(0)
    noise = rng.random((200, 1, 8, 8))
    noisy = evaluate_inversion(
        _result(noise, np.repeat(classes, 20)), digits_evaluator, digits
    ).summary()
    assert noisy["top1_accuracy"] < 0.3
    assert noisy["ssim"] < 0.3
    assert noisy["knn_distance"] > 10 * (s["knn_distance"] + 1)
