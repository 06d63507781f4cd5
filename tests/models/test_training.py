from __future__ import annotations

import torch

from invguard.data import ImageDataset
from invguard.metrics import Evaluator
from invguard.models import AugmentConfig, TrainedModel
from invguard.models.training import augment_batch, smoothed_cross_entropy


def test_reference_target_learns_digits(digits_mlp: TrainedModel) -> None:
    assert digits_mlp.train_accuracy > 0.97
    assert digits_mlp.test_accuracy is not None
    assert digits_mlp.test_accuracy > 0.9


def test_evaluation_model_is_accurate_on_digits(
    digits: ImageDataset, digits_evaluator: Evaluator
) -> None:
    x, y = digits.all_images()
    logits, feats = digits_evaluator.logits_and_features(x)
    assert (logits.argmax(1) == y).mean() > 0.98
    assert feats.shape == (len(y), 128)


def test_augmentation_is_batched_seeded_and_bounded() -> None:
    x = torch.rand(16, 1, 20, 18, generator=torch.Generator().manual_seed(0))
    cfg = AugmentConfig(blend=0.3)
    a = augment_batch(x, cfg, torch.Generator().manual_seed(1))
    b = augment_batch(x, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert a.shape == x.shape
    assert float(a.min()) >= 0.0
    assert float(a.max()) <= 1.0
    assert float((a - x).abs().mean()) > 0.01


def test_label_smoothing_matches_its_definition() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    y = torch.tensor([0])
    ce = smoothed_cross_entropy(logits, y, 0.0)
    assert torch.allclose(ce, torch.nn.functional.cross_entropy(logits, y))
    logp = torch.log_softmax(logits, 1)[0]
    for a in (0.3, -0.2):
        target = torch.tensor([1 - a + a / 3, a / 3, a / 3])
        assert torch.allclose(smoothed_cross_entropy(logits, y, a), -(target * logp).sum())
