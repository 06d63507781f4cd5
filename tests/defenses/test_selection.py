from __future__ import annotations

from invguard.defenses.selection import TradeOff, pareto_front, recommend


def test_pareto_front_and_recommendation() -> None:
    pts = [
        TradeOff("none", 0.95, 0.90),
        TradeOff("round", 0.95, 0.40),
        TradeOff("labels", 0.95, 0.10),
        TradeOff("dp-small-eps", 0.70, 0.05),
        TradeOff("bad", 0.80, 0.50),  # dominated by "round" and "labels"
        TradeOff("ls", 0.93, 0.10),  # dominated by "labels"
    ]
    assert pareto_front(pts) == [2, 3]
    assert recommend(pts, 0.95, 0.03) == 2
    assert recommend(pts, 0.95, 0.30) == 3
    assert recommend([TradeOff("x", 0.5, 0.1)], 0.95, 0.03) is None
    # ties on leakage go to the more accurate
    assert recommend([TradeOff("a", 0.93, 0.1), TradeOff("b", 0.94, 0.1)], 0.95, 0.03) == 1
