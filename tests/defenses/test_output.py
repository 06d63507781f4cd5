from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from invguard.data import ImageDataset
from invguard.defenses.output import apply_output_spec, label_only, round_scores, top_k
from invguard.errors import InvalidParameterError, TargetError
from invguard.models import TrainedModel
from invguard.targets import Capability, OutputSpec, RestrictedTarget, TorchTarget

probs = st.integers(2, 12).flatmap(
    lambda c: arrays(
        np.float32, st.tuples(st.integers(1, 20), st.just(c)), elements=st.floats(0, 1, width=32)
    )
)


@given(probs, st.integers(1, 12))
def test_top_k_keeps_the_k_largest_and_the_label(p: np.ndarray, k: int) -> None:
    out = top_k(p, k)
    assert ((out > 0).sum(1) <= k).all()
    assert (out.argmax(1) == p.argmax(1)).all()
    kept = out > 0
    assert np.array_equal(out[kept], p[kept])


@given(probs, st.integers(0, 6))
def test_rounding_is_bounded(p: np.ndarray, d: int) -> None:
    out = round_scores(p, d)
    # half a step, or one and a half where the label's score is lifted out of a tie
    assert np.abs(out - p).max() <= 1.5 * 10.0**-d + 1e-6


def test_label_only_and_spec() -> None:
    p = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]], np.float32)
    assert label_only(p).tolist() == [[0, 1, 0], [1, 0, 0]]
    spec = OutputSpec(top_k=2, decimals=1)
    assert np.allclose(apply_output_spec(p, spec), [[0, 0.7, 0.2], [0.5, 0.2, 0]])
    assert spec.capabilities() == {Capability.SCORES, Capability.LABELS}
    assert OutputSpec().capabilities() >= {Capability.PROBABILITIES}
    assert OutputSpec(scores=False).describe() == "labels only"
    with pytest.raises(InvalidParameterError, match="'decimals' parameter must be an int >= 0"):
        OutputSpec(decimals=-1)
    with pytest.raises(InvalidParameterError, match="'top_k'"):
        OutputSpec(top_k=0)


def test_restricted_target(digits: ImageDataset, digits_mlp: TrainedModel) -> None:
    inner = TorchTarget(digits_mlp.model, input_shape=digits.image_shape, query_budget=100)
    t = RestrictedTarget(inner, OutputSpec(top_k=3, decimals=2))
    out = t.predict(digits.x_test[:10])
    assert ((out > 0).sum(1) <= 3).all()
    assert t.queries == 10
    assert Capability.GRADIENTS not in t.capabilities
    with pytest.raises(TargetError, match="'top_k' parameter must be <= the number of classes"):
        RestrictedTarget(inner, OutputSpec(top_k=11))
