"""Output defences: labels kept where promised (property-based), batched, validated."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from invguard.data import ImageDataset
from invguard.defenses import (
    Compose,
    GaussianNoise,
    LabelOnly,
    ReverseSigmoid,
    RoundScores,
    TopK,
)
from invguard.defenses.output import gaussian_noise, reverse_sigmoid, round_scores
from invguard.errors import InvalidParameterError, TargetError
from invguard.models import TrainedModel
from invguard.targets import Capability, TorchTarget


def _softmax_rows(raw: np.ndarray) -> np.ndarray:
    z = raw - raw.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return out


batches = (
    st.integers(2, 40)
    .flatmap(
        lambda c: arrays(
            np.float64,
            st.tuples(st.integers(1, 30), st.just(c)),
            elements=st.floats(-12, 12, allow_nan=False, allow_infinity=False),
        )
    )
    .map(_softmax_rows)
)

# hand-made hard cases: exact ties and near ties
TIES = np.array(
    [[0.5, 0.5, 0.0], [0.3334, 0.3333, 0.3333], [0.44, 0.451, 0.109], [0.2, 0.2, 0.6]],
    np.float32,
)


@settings(max_examples=300, deadline=None)
@given(batches, st.integers(0, 6))
def test_rounding_keeps_every_label(p: np.ndarray, d: int) -> None:
    out = round_scores(p, d)
    assert (out.argmax(1) == p.argmax(1)).all()
    assert np.abs(out - p).max() <= 1.5 * 10.0**-d + 1e-6


@settings(max_examples=300, deadline=None)
@given(batches, st.floats(0.05, 3.0), st.floats(0.01, 2.0))
def test_reverse_sigmoid_keeps_every_label(p: np.ndarray, beta: float, gamma: float) -> None:
    out = reverse_sigmoid(p, beta, gamma)
    assert (out.argmax(1) == p.argmax(1)).all()
    assert np.allclose(out.sum(1), 1.0, atol=1e-4)
    assert (out >= 0).all()


@settings(max_examples=200, deadline=None)
@given(batches, st.floats(0.001, 0.5), st.integers(0, 2**32 - 1))
def test_noise_keeps_every_label(p: np.ndarray, sigma: float, seed: int) -> None:
    out = gaussian_noise(p, sigma, np.random.default_rng(seed))
    assert (out.argmax(1) == p.argmax(1)).all()
    assert np.allclose(out.sum(1), 1.0, atol=1e-4)


@settings(max_examples=200, deadline=None)
@given(batches, st.integers(1, 40))
def test_top_k_keeps_every_label(p: np.ndarray, k: int) -> None:
    k = min(k, p.shape[1])
    out = TopK(k=k).transform(p.shape[1])(p)
    assert (out.argmax(1) == p.argmax(1)).all()
    assert ((out > 0).sum(1) <= k).all()


def test_ties_and_reverse_sigmoid_really_perturbs() -> None:
    for d in (0, 1, 2):
        assert (round_scores(TIES, d).argmax(1) == TIES.argmax(1)).all()
    p = _softmax_rows(np.random.default_rng(0).normal(0, 3, (50, 10)))
    rs = reverse_sigmoid(p, 1.0, 0.1)
    assert np.abs(rs - p).mean() > 0.01  # it does change the scores


def test_wrapped_targets(digits: ImageDataset, digits_mlp: TrainedModel) -> None:
    inner = TorchTarget(digits_mlp.model, input_shape=digits.image_shape)
    x = digits.x_test[:64]
    truth = inner.predict(x)
    for defence in (
        RoundScores(decimals=1),
        TopK(k=2),
        ReverseSigmoid(beta=0.8, gamma=0.2),
        GaussianNoise(sigma=0.05, seed=1),
        Compose([TopK(k=3), RoundScores(decimals=2)]),
    ):
        t = defence.wrap(inner)
        out = t.predict(x)
        assert out.shape == truth.shape
        assert (out.argmax(1) == truth.argmax(1)).all(), defence
        assert Capability.GRADIENTS not in t.capabilities
        assert Capability.SCORES in t.capabilities
    lab = LabelOnly().wrap(inner)
    assert lab.capabilities == {Capability.LABELS}
    assert np.array_equal(lab.predict(x).argmax(1), truth.argmax(1))
    assert set(np.unique(lab.predict(x))) == {0.0, 1.0}
    # queries are counted on the inner target
    before = inner.queries
    TopK(k=2).wrap(inner).predict(x)
    assert inner.queries == before + len(x)
    # seeded noise is reproducible per wrap
    a = GaussianNoise(sigma=0.1, seed=3).wrap(inner).predict(x)
    b = GaussianNoise(sigma=0.1, seed=3).wrap(inner).predict(x)
    assert np.array_equal(a, b)


def test_parameters_are_validated(digits: ImageDataset, digits_mlp: TrainedModel) -> None:
    with pytest.raises(
        InvalidParameterError, match="'decimals' parameter must be an int >= 0, got -1"
    ):
        RoundScores(decimals=-1)
    with pytest.raises(InvalidParameterError, match="'k' parameter must be an int >= 1, got 0"):
        TopK(k=0)
    with pytest.raises(InvalidParameterError, match=r"'sigma' parameter must be a float > 0\.0"):
        GaussianNoise(sigma=0)
    with pytest.raises(InvalidParameterError, match="'beta' parameter"):
        ReverseSigmoid(beta=-1.0)
    inner = TorchTarget(digits_mlp.model, input_shape=digits.image_shape)
    with pytest.raises(
        InvalidParameterError,
        match=r"'k' parameter must be <= the number of classes \(10\), got 11",
    ):
        TopK(k=11).wrap(inner)
    with pytest.raises(TargetError, match="needs a target that returns scores"):
        RoundScores(decimals=2).wrap(LabelOnly().wrap(inner))
