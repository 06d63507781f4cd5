"""Choosing a defence: the accuracy/leakage Pareto front and the recommendation (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TradeOff:
    """One defended model: its test accuracy and the strongest fitting attack's top-1 on it."""

    name: str
    accuracy: float
    leakage: float


def pareto_front(points: Sequence[TradeOff]) -> list[int]:
    """Indices of the points no other point beats on both axes (higher accuracy, lower leakage).

    A point is dominated when another has accuracy >= and leakage <= with at least one strict.
    """
    front = []
    for i, p in enumerate(points):
        dominated = any(
            q.accuracy >= p.accuracy
            and q.leakage <= p.leakage
            and (q.accuracy > p.accuracy or q.leakage < p.leakage)
            for j, q in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front


def recommend(
    points: Sequence[TradeOff],
    baseline_accuracy: float,
    max_accuracy_drop: float,
    tiebreak: Sequence[float] | None = None,
) -> int | None:
    """The defence with the lowest leakage among those losing at most ``max_accuracy_drop`` of
    test accuracy (absolute, e.g. 0.03 = 3 points); ties go to the lower ``tiebreak`` value (e.g.
    the mean leakage over all attacks), then to the more accurate. None if none fits.
    """
    tb = list(tiebreak) if tiebreak is not None else [0.0] * len(points)
    ok = [
        i
        for i, p in enumerate(points)
        if baseline_accuracy - p.accuracy <= max_accuracy_drop + 1e-12
    ]
    if not ok:
        return None
    return min(ok, key=lambda i: (points[i].leakage, tb[i], -points[i].accuracy))
