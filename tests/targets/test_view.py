"""BaseTarget's one predict, OutputPolicy, and TargetView: restricted, defended, budgeted views."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from torch import nn

from invguard.defenses import DefendedTarget, GaussianNoise, LabelOnly, RoundScores, TopK
from invguard.errors import InvalidParameterError, TargetError
from invguard.targets import (
    FULL_PROBABILITIES,
    BaseTarget,
    Capability,
    GradientTarget,
    OutputPolicy,
    OutputSpec,
    QueryBudgetExceededError,
    RestrictedTarget,
    Target,
    TargetView,
    TorchTarget,
    target_view,
)
from invguard.targets.base import DifferentiableTarget
from invguard.targets.output import apply_output_spec

SHAPE = (1, 4, 4)


class _Fixed(BaseTarget):
    """A target that answers the same probabilities for every input."""

    def __init__(self, probs: list[float], *, output: OutputSpec = FULL_PROBABILITIES) -> None:
        super().__init__(input_shape=SHAPE, query_budget=10)
        self._probs = np.asarray(probs, np.float64)
        self._declare(len(probs), output)

    def _scores(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.tile(self._probs, (len(x), 1))  # float64 on purpose


def _torch_target() -> TorchTarget:
    linear = nn.Linear(16, 5)
    torch.nn.init.normal_(linear.weight, generator=torch.Generator().manual_seed(0))
    return TorchTarget(nn.Sequential(nn.Flatten(), linear), input_shape=SHAPE)


def _x(n: int) -> NDArray[np.float32]:
    return np.random.default_rng(n).random((n, *SHAPE), dtype=np.float32)


def test_base_target_checks_charges_scores_and_restricts() -> None:
    t = _Fixed([0.1, 0.6, 0.3], output=OutputSpec(top_k=2, decimals=1))
    assert isinstance(t, Target)
    assert t.capabilities == {Capability.SCORES, Capability.LABELS}
    out = t.predict(_x(3))
    assert out.dtype == np.float32
    assert np.allclose(out, [[0.0, 0.6, 0.3]] * 3)
    assert t.queries == 3 == t.counter.count
    assert t.predict(_x(1)[0]).shape == (1, 3)  # one input without the batch axis
    assert t.queries == 4
    with pytest.raises(TargetError, match=r"'x' must have shape \(n, 1, 4, 4\)"):
        t.predict(np.zeros((2, 16), np.float32))
    with pytest.raises(QueryBudgetExceededError, match="a batch of 7 more refused"):
        t.predict(_x(7))
    assert t.queries == 4
    with pytest.raises(InvalidParameterError, match=r"'top_k' parameter must be <= .* \(3\)"):
        _Fixed([0.5, 0.5, 0.0], output=OutputSpec(top_k=4))


def test_output_policy_of_a_spec_is_the_spec() -> None:
    p = np.random.default_rng(0).dirichlet(np.ones(6), size=40).astype(np.float32)
    for spec in (
        OutputSpec(),
        OutputSpec(top_k=2),
        OutputSpec(decimals=1),
        OutputSpec(top_k=3, decimals=2),
        OutputSpec(scores=False),
    ):
        policy = OutputPolicy.of(spec)
        assert np.array_equal(policy.transform(6)(p), apply_output_spec(p, spec)), spec
        assert policy.capabilities() == spec.capabilities(), spec
        assert policy.full == spec.full
    assert OutputPolicy.of(None) == OutputPolicy() == OutputPolicy.of(OutputSpec())
    assert OutputPolicy.of(TopK(k=2)).steps == (TopK(k=2),)
    policy = OutputPolicy([TopK(k=3), RoundScores(decimals=2)])  # type: ignore[arg-type]
    assert policy.steps == (TopK(k=3), RoundScores(decimals=2))
    assert policy.name == "compose"
    assert policy.describe() == "top-3 scores, then scores rounded to 2 decimals"
    assert OutputPolicy((TopK(k=2), LabelOnly())).labels_only
    with pytest.raises(InvalidParameterError, match="'steps' parameter must hold output steps"):
        OutputPolicy(("top_k",))  # type: ignore[arg-type]


def test_views_restrict_and_count_on_the_inner_target() -> None:
    inner = _torch_target()
    x = _x(8)
    truth = inner.predict(x)
    view = TargetView(inner, output=OutputSpec(top_k=2))
    assert np.array_equal(view.predict(x), apply_output_spec(truth, OutputSpec(top_k=2)))
    assert view.capabilities == {Capability.SCORES, Capability.LABELS}
    assert not isinstance(view, GradientTarget)
    assert view.queries == inner.queries == 16
    assert view.counter is None
    defended = TopK(k=2).wrap(inner)
    assert isinstance(defended, TargetView)
    assert np.array_equal(defended.predict(x), view.predict(x))
    kept = DefendedTarget(inner, GaussianNoise(sigma=0.1, seed=2))
    assert kept.defense == GaussianNoise(sigma=0.1, seed=2)
    restricted = RestrictedTarget(inner, OutputSpec(scores=False))
    assert restricted.output == OutputSpec(scores=False)
    assert restricted.capabilities == {Capability.LABELS}
    with pytest.raises(TargetError, match="defence 'round' needs a target that returns scores"):
        TargetView(restricted, output=RoundScores(decimals=1))


def test_a_budgeted_view_counts_and_refuses_on_its_own() -> None:
    inner = _torch_target()
    view = TargetView(inner, query_budget=5)
    assert view.capabilities == {Capability.PROBABILITIES, Capability.SCORES, Capability.LABELS}
    view.predict(_x(3))
    view.predict(_x(1)[0])  # one input, counted once
    assert view.queries == 4 == inner.queries
    with pytest.raises(QueryBudgetExceededError, match="query budget of 5 exhausted"):
        view.predict(_x(2))
    assert inner.queries == 4  # refused before the inner target saw it
    counted = TargetView(inner, own_count=True)
    counted.predict(_x(2))
    assert counted.queries == 2
    assert inner.queries == 6


def test_target_view_delegates_gradients_only_when_allowed() -> None:
    inner = _torch_target()
    plain = target_view(inner, query_budget=10)
    assert not isinstance(plain, GradientTarget)
    white = target_view(inner, query_budget=10, gradients=True)
    assert isinstance(white, DifferentiableTarget)
    assert white.capabilities == inner.capabilities
    xt = torch.from_numpy(_x(4))
    logits, grad = white.class_gradient(xt, torch.arange(4), quantity="logit")
    want_logits, want_grad = inner.class_gradient(xt, torch.arange(4), quantity="logit")
    assert torch.allclose(logits, want_logits)
    assert torch.allclose(grad, want_grad)
    white.differentiable_logits(xt)
    assert white.queries == 8
    with pytest.raises(QueryBudgetExceededError):
        white.class_gradient(xt, torch.arange(4), quantity="probability")
    with pytest.raises(InvalidParameterError, match="'gradients' parameter must be False"):
        target_view(inner, output=TopK(k=2), gradients=True)
    black = target_view(_Fixed([0.5, 0.5]), gradients=True)  # nothing to delegate
    assert not isinstance(black, GradientTarget)
