"""The attacks on the real Adult data: they beat the baselines where the model carries the
attribute, and show no significant advantage where it cannot (negative controls).

Significance is a one-sided exact McNemar test (a binomial test on the rows where exactly one of
attack and baseline is right), at 0.001 for "beats" and 0.05 for "no significant advantage".
"""

from __future__ import annotations

import numpy as np
import pytest

from invguard.tabular.attacks import (
    CSMIA,
    AttributeAttack,
    ConfidenceScoreAttack,
    DecisionTreeWhiteBox,
    FredriksonMAP,
)
from invguard.tabular.models import TrainedTabularModel
from invguard.tabular.report import TabularAssessment, run_assessment
from invguard.tabular.scenario import TabularScenario

from .conftest import _train, as_target

ROWS = 3000
BEATS = 1e-3
NO_ADVANTAGE = 0.05
ATTACKS: list[AttributeAttack] = [
    FredriksonMAP(),
    FredriksonMAP(prior="imputation"),
    CSMIA(),
    ConfidenceScoreAttack(),
    DecisionTreeWhiteBox(),
]


def _assess(
    sc: TabularScenario, trained: TrainedTabularModel, population: str = "members"
) -> TabularAssessment:
    request, truth = sc.request(population, max_rows=ROWS, seed=0)  # type: ignore[arg-type]
    return run_assessment(as_target(sc, trained), request, truth, attacks=ATTACKS, rng=0)


def _row(a: TabularAssessment, label: str) -> tuple[float, float, float, float]:
    """(p vs prior, p vs imputation, accuracy advantage vs prior, vs imputation)."""
    (r,) = [r for r in a.rows if r.label == label]
    assert r.mcnemar_prior is not None
    assert r.mcnemar_imputation is not None
    assert r.vs_prior is not None
    assert r.vs_imputation is not None
    return (
        r.mcnemar_prior.p_value,
        r.mcnemar_imputation.p_value,
        r.vs_prior["accuracy"],
        r.vs_imputation["accuracy"],
    )


@pytest.fixture(scope="module")
def tree_members(sex: TabularScenario, sex_tree: TrainedTabularModel) -> TabularAssessment:
    return _assess(sex, sex_tree)


@pytest.fixture(scope="module")
def shuffled_members(
    sex: TabularScenario, sex_tree_shuffled: TrainedTabularModel
) -> TabularAssessment:
    return _assess(sex, sex_tree_shuffled)


@pytest.mark.parametrize(
    "label", ["fredrikson-map", "csmia", "fredrikson-tree (white-box)"], ids=str
)
def test_model_based_attacks_beat_the_prior_on_a_tree_that_uses_sex(
    tree_members: TabularAssessment, label: str
) -> None:
    # the fully grown tree (train accuracy 0.98) splits on sex for part of its training rows:
    # the model alone, with the marginal prior, recovers sex better than the majority guess
    p_prior, _, adv, _ = _row(tree_members, label)
    assert p_prior < BEATS
    assert adv > 0.005


def test_the_model_adds_to_imputation_on_members(tree_members: TabularAssessment) -> None:
    # the MAP estimator with a learned prior beats the strongest baseline: the model leaks more
    # about its training rows than the population reveals
    p_prior, p_imp, _, adv_imp = _row(tree_members, "fredrikson-map (imputation prior)")
    assert p_prior < BEATS
    assert p_imp < BEATS
    assert adv_imp > 0.005


def test_baselines_are_what_they_claim(tree_members: TabularAssessment) -> None:
    prior, imputation = tree_members.rows[0], tree_members.rows[1]
    male = tree_members.values.index("Male")
    assert prior.metrics.accuracy == pytest.approx(
        tree_members.truth_counts["Male"] / ROWS, abs=1e-12
    )
    assert prior.metrics.g_mean == 0.0
    assert prior.metrics.mcc == 0.0
    assert tree_members.results[0].predictions.tolist() == [male] * ROWS
    # relationship (Husband/Wife) alone gives sex away for most rows: a strong baseline
    assert imputation.metrics.accuracy > 0.8
    assert imputation.queries == 0


@pytest.mark.parametrize(
    "label",
    ["fredrikson-map", "csmia", "fredrikson-tree (white-box)", "fredrikson-map (imputation prior)"],
    ids=str,
)
def test_negative_control_shuffled_attribute_shows_no_advantage(
    shuffled_members: TabularAssessment, label: str
) -> None:
    # the same tree trained with sex shuffled across its rows: its use of the sex column carries
    # nothing about the true value, so no attack may beat the baseline it competes with
    p_prior, p_imp, _, _ = _row(shuffled_members, label)
    if label.endswith("(imputation prior)"):
        assert p_imp > NO_ADVANTAGE
    else:
        assert p_prior > NO_ADVANTAGE


def test_negative_control_learned_attack_is_no_better_than_imputation(
    shuffled_members: TabularAssessment,
) -> None:
    _, p_imp, _, adv = _row(shuffled_members, "confidence-model (logreg)")
    assert p_imp > NO_ADVANTAGE
    assert abs(adv) < 0.01


def test_non_members_show_no_advantage_over_imputation(
    sex: TabularScenario, sex_tree: TrainedTabularModel
) -> None:
    # the leak is of the *training* rows: on held-out rows the same attack has no edge
    a = _assess(sex, sex_tree, "non-members")
    _, p_imp, _, _ = _row(a, "fredrikson-map (imputation prior)")
    assert p_imp > NO_ADVANTAGE


def test_race_on_a_tree_map_beats_prior_and_imputation(
    race: TabularScenario, race_tree: TrainedTabularModel
) -> None:
    request, truth = race.request("members", max_rows=ROWS, seed=0)
    a = run_assessment(
        as_target(race, race_tree),
        request,
        truth,
        attacks=[FredriksonMAP(), FredriksonMAP(prior="imputation")],
        rng=0,
    )
    assert _row(a, "fredrikson-map")[0] < BEATS
    assert _row(a, "fredrikson-map (imputation prior)")[1] < BEATS
    assert set(a.values) == {
        "Amer-Indian-Eskimo",
        "Asian-Pac-Islander",
        "Black",
        "Other",
        "White",
    }


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mlp", "gbdt", "forest"])
def test_other_models_members_leak_beyond_imputation(sex: TabularScenario, arch: str) -> None:
    # measured on all training rows (benchmarks/bench_attribute_inference.py): a small but
    # significant member-only advantage of the MAP attack with a learned prior
    trained = _train(sex, arch)
    request, truth = sex.request("members", seed=0)
    attacks: list[AttributeAttack] = [FredriksonMAP(prior="imputation")]
    if arch == "forest":
        attacks.append(DecisionTreeWhiteBox())
    a = run_assessment(as_target(sex, trained), request, truth, attacks=attacks, rng=0)
    p_imp = _row(a, "fredrikson-map (imputation prior)")[1]
    assert p_imp < 0.05
    if arch == "forest":
        assert _row(a, "fredrikson-tree (white-box)")[0] < BEATS
    assert np.all(a.results[-1].predictions >= 0)
