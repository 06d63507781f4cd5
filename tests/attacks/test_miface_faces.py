"""MI-FACE on the real AT&T faces (46x56), all 40 identities: the quality InvGuard claims.

Measured with the defaults (README, "MI-FACE on the AT&T faces"): top-1 0.625 against softmax
regression and 0.875 against the MLP, judged by the independent evaluation model; each bound below
sits just under the measurement.
"""

from __future__ import annotations

import pytest
import torch

from invguard.attacks import InversionRequest, MIFace
from invguard.attacks.miface import total_variation_and_grad
from invguard.data import ImageDataset
from invguard.metrics import Evaluator, InversionMetrics, evaluate_inversion
from invguard.models import ModelCache, TrainedModel, train_evaluation_model
from invguard.models.training import fgsm_examples
from invguard.targets import TorchTarget

pytestmark = pytest.mark.slow


def _invert(model: TrainedModel, faces: ImageDataset, evaluator: Evaluator) -> InversionMetrics:
    target = TorchTarget(model.model, input_shape=faces.image_shape)
    result = MIFace().run(target, InversionRequest(), rng=0)
    assert result.reconstructions.shape == (40, 1, 56, 46)
    assert result.queries == int(result.iterations.sum())
    return evaluate_inversion(result, evaluator, faces)


def test_reference_targets_are_good_classifiers(
    faces_softmax: TrainedModel, faces_mlp: TrainedModel
) -> None:
    for m in (faces_softmax, faces_mlp):
        assert m.test_accuracy is not None
        assert m.test_accuracy >= 0.93


def test_miface_against_softmax_regression(
    faces: ImageDataset, faces_softmax: TrainedModel, faces_evaluator: Evaluator
) -> None:
    m = _invert(faces_softmax, faces, faces_evaluator)
    s = m.summary()
    # measured 0.600 (bench_generative, two threads) and 0.575 (this suite's models trained with
    # one torch thread per worker): one identity apart, so the bound sits under both
    assert s["top1_accuracy"] >= 0.55
    assert s["top5_accuracy"] >= 0.85
    assert s["closer_to_own_fraction"] >= 0.95
    assert s["target_confidence"] > 0.95


def test_miface_against_mlp(
    faces: ImageDataset, faces_mlp: TrainedModel, faces_evaluator: Evaluator
) -> None:
    m = _invert(faces_mlp, faces, faces_evaluator)
    s = m.summary()
    assert s["top1_accuracy"] >= 0.8
    assert s["top5_accuracy"] >= 0.95
    assert s["closer_to_own_fraction"] >= 0.95
    assert s["ssim"] > 0.5


def test_prior_and_stopping_rule_matter(
    faces: ImageDataset, faces_mlp: TrainedModel, faces_evaluator: Evaluator
) -> None:
    """Without the L2/TV prior, Adam drives pixels to the box edges: the robust evaluation model
    still names 0.775 of these saturated images (the faces show through), against 0.975 with it."""
    target = TorchTarget(faces_mlp.model, input_shape=faces.image_shape)
    bare = MIFace(l2_weight=0.0, tv_weight=0.0).run(target, InversionRequest(), rng=0)
    s = evaluate_inversion(bare, faces_evaluator, faces).summary()
    assert s["top1_accuracy"] <= 0.85


def test_evaluation_model_generalises_and_resists_fgsm(
    faces: ImageDataset, model_cache: ModelCache
) -> None:
    """The evaluation model never sees the held-out images 8-10 and recognises them (measured 0.983);
    it was trained with FGSM at 4/255 and keeps most of its accuracy under that attack."""
    trained = train_evaluation_model(faces, cache=model_cache)
    assert trained.test_accuracy is not None
    assert trained.test_accuracy >= 0.95
    assert trained.config.adversarial_eps == pytest.approx(4 / 255)
    model = trained.model.eval()
    x = torch.from_numpy(faces.x_test)
    y = torch.from_numpy(faces.y_test)
    adv = fgsm_examples(model, x, y, 4 / 255, torch.Generator().manual_seed(0))
    with torch.no_grad():
        robust = float((model(adv).argmax(1) == y).float().mean())
    assert robust >= 0.7


def test_total_variation_gradient_is_exact() -> None:
    x = torch.rand(3, 1, 7, 5, dtype=torch.float64, requires_grad=True)
    value, grad = total_variation_and_grad(x.detach())
    base = x[..., :-1, :-1]
    dx = x[..., :-1, 1:] - base
    dy = x[..., 1:, :-1] - base
    ref = torch.sqrt(dx * dx + dy * dy + 1e-6).flatten(1).mean(1)
    (ref_grad,) = torch.autograd.grad(ref.sum(), x)
    assert torch.allclose(value, ref)
    assert torch.allclose(grad, ref_grad)
