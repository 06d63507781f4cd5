"""Metrics: known values, agreement with scikit-learn and scipy, and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest
from sklearn.metrics import balanced_accuracy_score, matthews_corrcoef, recall_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from invguard.errors import InvalidParameterError
from invguard.tabular.metrics import (
    AttributeMetrics,
    accuracy,
    advantage,
    attribute_metrics,
    confusion_matrix,
    g_mean,
    mcc,
    mcnemar_test,
)


def test_known_values() -> None:
    t = np.array([0, 0, 0, 0, 1, 1])
    p = np.array([0, 0, 0, 1, 1, 0])
    assert accuracy(t, p) == pytest.approx(4 / 6)
    assert g_mean(t, p) == pytest.approx(math.sqrt(0.75 * 0.5))
    assert confusion_matrix(t, p).tolist() == [[3, 1], [1, 1]]
    # majority guess: accurate-looking, but G-mean and MCC are 0
    majority = np.zeros(6, dtype=np.int64)
    assert accuracy(t, majority) == pytest.approx(4 / 6)
    assert g_mean(t, majority) == 0.0
    assert mcc(t, majority) == 0.0
    assert mcc(t, t) == pytest.approx(1.0)
    assert mcc(t, 1 - t) == pytest.approx(-1.0)


@pytest.mark.parametrize(("k", "n", "seed"), [(2, 50, 0), (3, 200, 1), (5, 1000, 2), (9, 31, 3)])
def test_metrics_equal_sklearn_on_seeded_random_labels(k: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = rng.integers(0, k, n)
    # a better-than-chance guesser: right 60% of the time, uniform otherwise
    p = np.where(rng.random(n) < 0.6, t, rng.integers(0, k, n))
    cm = confusion_matrix(t, p, k)
    assert np.array_equal(cm, sk_confusion_matrix(t, p, labels=np.arange(k)))
    assert cm.sum() == n
    assert np.trace(cm) == np.sum(t == p)
    assert mcc(t, p, k) == pytest.approx(matthews_corrcoef(t, p), abs=1e-12)
    assert mcc(t, p, k) > 0.3  # the guesser is informative
    present = np.unique(t)
    recalls = recall_score(t, p, labels=present, average=None)
    assert g_mean(t, p, k) == pytest.approx(float(np.prod(recalls) ** (1 / len(recalls))))
    # the hand-written forms these replaced, on the same labels
    rows = cm.sum(axis=1)
    by_hand = np.diag(cm)[rows > 0] / rows[rows > 0]
    assert g_mean(t, p, k) == pytest.approx(float(np.exp(np.mean(np.log(by_hand)))), rel=1e-12)
    c, s_, ts, ps = float(np.trace(cm)), float(n), cm.sum(axis=1), cm.sum(axis=0)
    gorodkin = (c * s_ - ts @ ps) / math.sqrt((s_**2 - ps @ ps) * (s_**2 - ts @ ts))
    assert mcc(t, p, k) == pytest.approx(gorodkin, rel=1e-12)


def test_a_value_that_never_occurs_is_a_zero_row_and_no_recall() -> None:
    t = np.array([0, 0, 2, 2, 2])
    p = np.array([0, 1, 2, 2, 0])
    assert confusion_matrix(t, p, 4).tolist() == [
        [1, 1, 0, 0],
        [0, 0, 0, 0],
        [1, 0, 2, 0],
        [0, 0, 0, 0],
    ]
    assert g_mean(t, p, 4) == pytest.approx(math.sqrt(0.5 * 2 / 3))  # values 1 and 3 absent
    assert mcc(np.zeros(5, dtype=np.int64), np.zeros(5, dtype=np.int64)) == 0.0


labels = st.lists(st.integers(0, 4), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(st.data())
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_mcc_matches_sklearn_and_is_bounded(data: st.DataObject) -> None:
    t = np.array(data.draw(labels), dtype=np.int64)
    p = np.array(data.draw(st.lists(st.integers(0, 4), min_size=len(t), max_size=len(t))))
    ours = mcc(t, p, 5)
    assert -1.0 - 1e-9 <= ours <= 1.0 + 1e-9
    assert ours == pytest.approx(matthews_corrcoef(t, p), abs=1e-9)
    gm = g_mean(t, p, 5)
    assert 0.0 <= gm <= 1.0 + 1e-12
    assert gm <= balanced_accuracy_score(t, p) + 1e-9  # geometric <= arithmetic mean
    m = attribute_metrics(t, p, 5)
    assert m == AttributeMetrics(accuracy(t, p), gm, ours, len(t))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=80))
def test_mcnemar_is_the_exact_one_sided_binomial_tail(pairs: list[tuple[bool, bool]]) -> None:
    a = np.array([x for x, _ in pairs])
    b = np.array([y for _, y in pairs])
    res = mcnemar_test(a, b)
    assert res.a_only == int(np.sum(a & ~b))
    assert res.b_only == int(np.sum(~a & b))
    n = res.a_only + res.b_only
    if n == 0:
        assert res.p_value == 1.0
    else:
        expected = binomtest(res.a_only, n, 0.5, alternative="greater").pvalue
        assert res.p_value == pytest.approx(expected, rel=1e-9, abs=1e-15)
    swapped = mcnemar_test(b, a)
    assert (swapped.a_only, swapped.b_only) == (res.b_only, res.a_only)


def test_mcnemar_extremes() -> None:
    a = np.ones(30, dtype=bool)
    b = np.zeros(30, dtype=bool)
    assert mcnemar_test(a, b).p_value == pytest.approx(0.5**30)
    assert mcnemar_test(b, a).p_value == pytest.approx(1.0)


def test_advantage_is_a_difference_on_the_same_rows() -> None:
    a = AttributeMetrics(0.8, 0.7, 0.5, 10)
    b = AttributeMetrics(0.6, 0.0, 0.0, 10)
    assert advantage(a, b) == pytest.approx({"accuracy": 0.2, "g_mean": 0.7, "mcc": 0.5})
    with pytest.raises(InvalidParameterError, match="same rows"):
        advantage(a, AttributeMetrics(0.6, 0.0, 0.0, 11))


@pytest.mark.parametrize(
    ("t", "p", "match"),
    [
        ([0, 1], [0], "same non-zero length"),
        ([], [], "same non-zero length"),
        ([0.5, 1.0], [0, 1], "integer indices"),
        ([0, -1], [0, 1], ">= 0"),
    ],
)
def test_metric_inputs_are_validated(t: list[float], p: list[int], match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        accuracy(np.array(t), np.array(p))


def test_out_of_range_index_and_bad_mcnemar_inputs() -> None:
    with pytest.raises(InvalidParameterError, match="out of range for 2 values"):
        g_mean(np.array([0, 2]), np.array([0, 1]), 2)
    with pytest.raises(InvalidParameterError, match="boolean"):
        mcnemar_test(np.array([1, 0]), np.array([True, False]))
