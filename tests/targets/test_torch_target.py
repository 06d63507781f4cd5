from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from invguard.data import ImageDataset
from invguard.errors import TargetError
from invguard.models import TrainedModel
from invguard.targets import (
    Capability,
    GradientTarget,
    QueryBudgetExceededError,
    Target,
    TorchTarget,
)


def test_contract_capabilities_and_query_counting(
    digits: ImageDataset, digits_mlp: TrainedModel
) -> None:
    t = TorchTarget(digits_mlp.model, input_shape=digits.image_shape)
    assert isinstance(t, Target)
    assert isinstance(t, GradientTarget)
    assert Capability.GRADIENTS in t.capabilities
    assert t.num_classes == 10
    assert t.queries == 0
    probs = t.predict(digits.x_test[:25])
    assert probs.shape == (25, 10)
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert t.queries == 25
    t.class_gradient(torch.from_numpy(digits.x_test[:4]), torch.arange(4))
    assert t.queries == 29
    assert (probs.argmax(1) == digits.y_test[:25]).mean() > 0.8


def test_query_budget_is_never_exceeded(digits: ImageDataset, digits_mlp: TrainedModel) -> None:
    t = TorchTarget(digits_mlp.model, input_shape=digits.image_shape, query_budget=30)
    t.predict(digits.x_test[:20])
    with pytest.raises(QueryBudgetExceededError, match="budget of 30"):
        t.predict(digits.x_test[:11])
    assert t.queries == 20
    t.predict(digits.x_test[:10])
    assert t.queries == 30


@pytest.mark.parametrize("quantity", ["probability", "log_probability", "logit"])
def test_class_gradient_matches_finite_differences(quantity: str) -> None:
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    t = TorchTarget(model, input_shape=(1, 3, 4))
    x = torch.rand(2, 1, 3, 4, generator=gen, dtype=torch.float64)
    cls = torch.tensor([2, 0])
    logits, grad = t.class_gradient(x, cls, quantity=quantity)  # type: ignore[arg-type]

    def q(xx: torch.Tensor) -> torch.Tensor:
        z: torch.Tensor = model(xx)
        if quantity == "logit":
            return z.gather(1, cls.view(-1, 1)).sum()
        lp = torch.log_softmax(z, 1).gather(1, cls.view(-1, 1))
        return (lp.exp() if quantity == "probability" else lp).sum()

    eps = 1e-6
    num = torch.zeros_like(x)
    for i in range(x.numel()):
        d = torch.zeros(x.numel(), dtype=torch.float64)
        d[i] = eps
        d = d.view_as(x)
        num.view(-1)[i] = (q(x + d) - q(x - d)) / (2 * eps)
    assert torch.allclose(grad, num, atol=1e-6)
    assert torch.allclose(logits, model(x))


def test_probability_output_models_are_supported() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Softmax(dim=1))
    t = TorchTarget(model, input_shape=(1, 2, 2), output="probabilities")
    x = np.random.default_rng(0).random((5, 1, 2, 2), dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert np.allclose(t.predict(x), expected, atol=1e-5)


def test_bad_inputs_are_named(digits: ImageDataset, digits_mlp: TrainedModel) -> None:
    with pytest.raises(TargetError, match=r"does not accept inputs of shape \(1, 9, 9\)"):
        TorchTarget(digits_mlp.model, input_shape=(1, 9, 9))
    with pytest.raises(TargetError, match="returns 10 class scores, but num_classes=3"):
        TorchTarget(digits_mlp.model, input_shape=(1, 8, 8), num_classes=3)
    t = TorchTarget(digits_mlp.model, input_shape=(1, 8, 8))
    with pytest.raises(TargetError, match=r"must have shape \(n, 1, 8, 8\)"):
        t.predict(np.zeros((2, 1, 8, 9), np.float32))
    bad = np.zeros((2, 1, 8, 8), np.float32)
    bad[1, 0, 3, 3] = np.nan
    with pytest.raises(TargetError, match="NaN"):
        t.predict(bad)
    assert t.queries == 0
