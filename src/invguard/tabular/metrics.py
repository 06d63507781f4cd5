"""Metrics of attribute inference: pure functions of true and inferred value indices.

Accuracy alone misleads when the sensitive attribute is unbalanced (always guessing "White" is 85%
right on Adult), so, following Mehnaz et al. (USENIX Security 2022), every result also reports
the G-mean (geometric mean of the per-value recalls: 0 when some value is never recovered) and the
Matthews correlation coefficient (Gorodkin's multi-class form: 0 for a constant guess, 1 when
perfect). The confusion matrix, the recalls and the MCC are scikit-learn's (``sklearn.metrics``). An attack is compared with a baseline on the same rows by the difference of each metric
and by an exact one-sided McNemar test on the rows where exactly one of the two is right.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from invguard.errors import InvalidParameterError


def _pair(
    true: NDArray[Any], pred: NDArray[Any], k: int | None
) -> tuple[NDArray[np.int64], NDArray[np.int64], int]:
    t = np.asarray(true)
    p = np.asarray(pred)
    if t.ndim != 1 or p.shape != t.shape or len(t) == 0:
        raise InvalidParameterError(
            f"true and predicted values must be 1-d arrays of the same non-zero length, got "
            f"{t.shape} and {p.shape}"
        )
    if not (np.issubdtype(t.dtype, np.integer) and np.issubdtype(p.dtype, np.integer)):
        raise InvalidParameterError("true and predicted values must be integer indices")
    t64, p64 = t.astype(np.int64), p.astype(np.int64)
    lo = min(int(t64.min()), int(p64.min()))
    if lo < 0:
        raise InvalidParameterError(f"value indices must be >= 0, got {lo}")
    hi = max(int(t64.max()), int(p64.max())) + 1
    if k is None:
        k = hi
    elif hi > k:
        raise InvalidParameterError(f"value index {hi - 1} is out of range for {k} values")
    return t64, p64, k


def confusion_matrix(
    true: NDArray[Any], pred: NDArray[Any], k: int | None = None
) -> NDArray[np.int64]:
    """``(k, k)`` counts: row = true value, column = inferred value (scikit-learn's)."""
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    t, p, k = _pair(true, pred, k)
    cm = sk_confusion_matrix(t, p, labels=np.arange(k))
    return np.asarray(cm, dtype=np.int64)


def accuracy(true: NDArray[Any], pred: NDArray[Any]) -> float:
    t, p, _ = _pair(true, pred, None)
    return float(np.mean(t == p))


def g_mean(true: NDArray[Any], pred: NDArray[Any], k: int | None = None) -> float:
    """Geometric mean of the recalls (scikit-learn's) of the values that occur in ``true``."""
    from sklearn.metrics import recall_score

    t, p, _ = _pair(true, pred, k)
    present = np.unique(t)
    recalls = np.asarray(
        recall_score(t, p, labels=present, average=None, zero_division=0.0), dtype=np.float64
    )
    if np.any(recalls == 0):
        return 0.0
    return float(np.exp(np.mean(np.log(recalls))))


def mcc(true: NDArray[Any], pred: NDArray[Any], k: int | None = None) -> float:
    """Matthews correlation coefficient (scikit-learn's, Gorodkin's multi-class form); 0 when
    undefined (a constant guess)."""
    from sklearn.metrics import matthews_corrcoef

    t, p, _ = _pair(true, pred, k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 for a constant guess
        warnings.simplefilter("ignore", UserWarning)  # "a single label was found"
        value = float(matthews_corrcoef(t, p))
    return 0.0 if math.isnan(value) else value


@dataclass(frozen=True)
class AttributeMetrics:
    """Accuracy, G-mean and MCC of one attack on ``n`` rows."""

    accuracy: float
    g_mean: float
    mcc: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def attribute_metrics(
    true: NDArray[Any], pred: NDArray[Any], k: int | None = None
) -> AttributeMetrics:
    t, p, k = _pair(true, pred, k)
    return AttributeMetrics(
        accuracy=accuracy(t, p), g_mean=g_mean(t, p, k), mcc=mcc(t, p, k), n=len(t)
    )


def advantage(attack: AttributeMetrics, baseline: AttributeMetrics) -> dict[str, float]:
    """How much better the attack is than the baseline, metric by metric (a difference)."""
    if attack.n != baseline.n:
        raise InvalidParameterError(
            f"an attack and its baseline must be scored on the same rows, got {attack.n} and "
            f"{baseline.n}"
        )
    return {
        "accuracy": attack.accuracy - baseline.accuracy,
        "g_mean": attack.g_mean - baseline.g_mean,
        "mcc": attack.mcc - baseline.mcc,
    }


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test that A is right more often than B on the same rows.

    ``a_only``: rows where only A is right; ``b_only``: rows where only B is right. ``p_value`` is
    the one-sided binomial tail P(X >= a_only) for X ~ Binomial(a_only + b_only, 1/2): small when A
    is significantly better; 1.0 when the two never disagree.
    """

    a_only: int
    b_only: int
    p_value: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def mcnemar_test(correct_a: NDArray[Any], correct_b: NDArray[Any]) -> McNemarResult:
    """One-sided exact McNemar test of "A is more accurate than B" (see :class:`McNemarResult`)."""
    a = np.asarray(correct_a)
    b = np.asarray(correct_b)
    if a.ndim != 1 or a.shape != b.shape or a.dtype != np.bool_ or b.dtype != np.bool_:
        raise InvalidParameterError(
            f"correct_a and correct_b must be boolean 1-d arrays of the same length, got "
            f"{a.dtype}{a.shape} and {b.dtype}{b.shape}"
        )
    a_only = int(np.sum(a & ~b))
    b_only = int(np.sum(~a & b))
    n = a_only + b_only
    if n == 0:
        return McNemarResult(0, 0, 1.0)
    from scipy.stats import binom

    p = float(binom.sf(a_only - 1, n, 0.5))
    return McNemarResult(a_only, b_only, min(1.0, max(0.0, p)))
