"""Known-answer tests of the judge contract, the verdict rule and agreement (no training)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from invguard.errors import InvalidParameterError
from invguard.judges import JudgePanel, kappa, verdict, votes
from invguard.judges.calibration import chance_p_value, reliability
from invguard.judges.panel import agreement, combine


def test_votes_rank_the_true_class_and_count_ties_against_it() -> None:
    scores = np.array([[3.0, 1.0, 2.0], [1.0, 1.0, 0.0], [0.0, 5.0, 4.0]])
    v = votes("j", scores, np.array([0, 1, 2]))
    assert v.rank.tolist() == [0, 1, 1]  # the tie in row 1 is a miss for top-1
    assert v.top1.tolist() == [True, False, False]
    assert v.predicted.tolist() == [0, 0, 1]


def test_votes_abstention_is_a_miss_with_no_prediction() -> None:
    scores = np.array([[-np.inf, -np.inf], [-np.inf, 0.3]])
    v = votes("j", scores, np.array([0, 0]))
    assert v.predicted.tolist() == [-1, 1]
    assert v.rank.tolist() == [2, 2]
    assert not v.top1.any()


def test_votes_refuse_a_wrong_shape() -> None:
    with pytest.raises(InvalidParameterError, match="scores of shape"):
        votes("j", np.zeros((2, 3)), np.array([0, 1, 2]))


def test_verdict_needs_two_of_three_and_human_labels_decide() -> None:
    hits = {
        "a": np.array([1, 1, 0, 0], bool),
        "b": np.array([1, 0, 1, 0], bool),
        "c": np.array([0, 0, 1, 0], bool),
    }
    assert verdict(hits, ["a", "b", "c"]).tolist() == [True, False, True, False]
    human = np.array([0, 1, -1, -1], np.int8)
    assert verdict(hits, ["a", "b", "c"], human=human).tolist() == [False, True, True, False]
    # two voters left (one judge unreliable): both must agree
    assert verdict(hits, ["a", "c"]).tolist() == [False, False, False, False]


def test_unreliable_judges_do_not_vote_and_too_few_degrade() -> None:
    cls = np.arange(3)
    eye = np.eye(3)
    v = {n: votes(n, eye, cls) for n in ("a", "b", "c")}
    j = combine(v, cls, unreliable=["a"])
    assert j.voters == ("b", "c")
    assert not j.degraded
    j = combine(v, cls, unreliable=["a", "b"])
    assert j.degraded
    assert j.voters == ("a", "b", "c")


def test_kappa_matches_sklearn_and_handles_constant_ratings() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random(50) < 0.5, rng.random(50) < 0.6
    assert kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert kappa(np.ones(4, bool), np.ones(4, bool)) == 1.0
    assert kappa(np.ones(4, bool), np.zeros(4, bool)) is None


def test_agreement_lists_every_pair() -> None:
    cls = np.arange(4)
    v = {n: votes(n, np.eye(4), cls) for n in ("a", "b", "c")}
    pairs = agreement(combine(v, cls))
    assert [(p["a"], p["b"]) for p in pairs] == [("a", "b"), ("a", "c"), ("b", "c")]
    assert all(p["agreement"] == 1.0 for p in pairs)


def test_reliability_flags_a_judge_fooled_by_artefacts() -> None:
    k = 40
    fooled = {"artefacts": np.array([True] * 8 + [False] * 32), "held_out": np.ones(40, bool)}
    status, ev = reliability(fooled, k)
    assert status == "unreliable"
    assert "artefacts" in ev["reasons"][0]
    fine = {"artefacts": np.array([True] + [False] * 39), "held_out": np.ones(40, bool)}
    assert reliability(fine, k)[0] == "reliable"
    weak = {"artefacts": np.zeros(40, bool), "held_out": np.array([True] * 10 + [False] * 30)}
    assert reliability(weak, k)[0] == "weak"
    assert chance_p_value(1, 40, 1 / 40) > 0.5


def test_panel_refuses_duplicate_names_and_mismatched_classes() -> None:
    class J:
        family = "test"

        def __init__(self, name: str, k: int) -> None:
            self.name, self.num_classes = name, k

        def scores(self, images: np.ndarray) -> np.ndarray:
            return np.zeros((len(images), self.num_classes))

        def info(self) -> dict[str, str]:
            return {"name": self.name}

    with pytest.raises(InvalidParameterError, match="unique"):
        JudgePanel([J("a", 3), J("a", 3)])
    with pytest.raises(InvalidParameterError, match="number of classes"):
        JudgePanel([J("a", 3), J("b", 4)])
