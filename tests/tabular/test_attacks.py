"""Attack mechanics: masking, batching, query counting, decision rules, validation, white box."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from numpy.typing import NDArray

from invguard.errors import InvalidParameterError, InvGuardError, TargetError
from invguard.tabular.attacks import (
    ATTACKS,
    CSMIA,
    AttributeAttack,
    AttributeAttackBase,
    AttributeContext,
    AttributeInferenceRequest,
    AuxiliaryRows,
    ConfidenceScoreAttack,
    DecisionTreeWhiteBox,
    FredriksonMAP,
    ImputationBaseline,
    Inference,
    PriorBaseline,
    _Marginals,
    _region_mass,
    candidate_inputs,
)
from invguard.tabular.data import SensitiveAttribute
from invguard.tabular.models import TrainedTabularModel, train_tabular_model
from invguard.tabular.scenario import TabularScenario
from invguard.targets.base import FULL_PROBABILITIES, Capability, OutputSpec, QueryCounter
from invguard.targets.sklearn import SklearnTarget

from .conftest import as_target

TWO = SensitiveAttribute("s", 1, 3, ("a", "b"), np.eye(2, dtype=np.float32))


class TableTarget:
    """Scores looked up by (row id in column 0, candidate in columns 1-2); records each call."""

    def __init__(self, table: NDArray[np.float32], output: OutputSpec = FULL_PROBABILITIES) -> None:
        self.table = table
        self.output = output
        self.calls: list[int] = []
        self._counter = QueryCounter()

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self.output.capabilities()

    @property
    def num_classes(self) -> int:
        return int(self.table.shape[2])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (3,)

    @property
    def queries(self) -> int:
        return self._counter.count

    def predict(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        self.calls.append(len(x))
        self._counter.charge(len(x))
        rows = np.rint(x[:, 0]).astype(int)
        cand = x[:, 1:3].argmax(axis=1)
        out: NDArray[np.float32] = self.table[rows, cand].astype(np.float32)
        return out


CSMIA_TABLE = np.array(
    [
        [[0.9, 0.1], [0.2, 0.8]],  # y=0: only candidate a reproduces it -> a
        [[0.3, 0.7], [0.1, 0.9]],  # y=1: both do -> the more confident, b
        [[0.4, 0.6], [0.3, 0.7]],  # y=0: neither does -> the less confident mistake, a
        [[0.8, 0.2], [0.8, 0.2]],  # y=0: a tie (same leaf) -> the prior's favourite, b
    ],
    dtype=np.float32,
)


def _request(
    y: list[int], *, prior: list[float] | None = None, aux: AuxiliaryRows | None = None
) -> AttributeInferenceRequest:
    x = np.zeros((len(y), 3), dtype=np.float32)
    x[:, 0] = np.arange(len(y))
    x[:, 1] = 1.0  # the "true" value a: must be masked before any attack sees it
    return AttributeInferenceRequest(
        attribute=TWO,
        x=x,
        y=np.array(y),
        prior=None if prior is None else np.array(prior),
        auxiliary=aux,
    )


def test_request_masks_the_sensitive_columns_on_a_copy() -> None:
    x = np.ones((2, 3), dtype=np.float32)
    req = AttributeInferenceRequest(attribute=TWO, x=x, y=np.array([0, 1]))
    assert req.x[:, 1:].sum() == 0.0
    assert x[:, 1:].sum() == 4.0  # the caller's array is untouched
    cand = candidate_inputs(req.x, TWO)
    assert cand.shape == (4, 3)
    assert cand[:, 1:].tolist() == [[1, 0], [0, 1], [1, 0], [0, 1]]
    assert cand[:, 0].tolist() == [1, 1, 1, 1]


def test_csmia_decision_rules_and_prior_tie_break() -> None:
    target = TableTarget(CSMIA_TABLE)
    res = CSMIA().run(target, _request([0, 1, 0, 0], prior=[0.3, 0.7]), rng=0)
    assert res.predictions.tolist() == [0, 1, 0, 1]
    assert res.extra["cases"] == {"one_match": 1, "several_match": 2, "no_match": 1}
    assert target.calls == [8]  # every candidate of every row in one call
    assert res.queries == 8
    assert res.predicted_values() == ["a", "b", "a", "b"]
    json.dumps(res.summary())


def test_map_combines_likelihood_and_prior() -> None:
    target = TableTarget(CSMIA_TABLE)
    # row 3: equal likelihoods -> the prior decides; row 0: 0.9 vs 0.2 beats a 0.3/0.7 prior
    res = FredriksonMAP().run(target, _request([0, 1, 0, 0], prior=[0.3, 0.7]), rng=0)
    assert res.predictions.tolist() == [0, 1, 1, 1]
    assert res.queries == 8
    assert target.calls == [8]
    np.testing.assert_allclose(res.scores.sum(axis=1), 1.0, rtol=1e-6)
    expected = np.array([0.9 * 0.3, 0.2 * 0.7])
    np.testing.assert_allclose(res.scores[0], expected / expected.sum(), rtol=1e-5)


def test_prior_baseline_needs_a_prior_and_never_queries() -> None:
    res = PriorBaseline().run(None, _request([0, 1], prior=[0.2, 0.8]))
    assert res.predictions.tolist() == [1, 1]
    assert res.queries == 0
    with pytest.raises(InvalidParameterError, match="needs the attribute's prior"):
        PriorBaseline().run(None, _request([0, 1]))


def test_attacks_that_learn_need_auxiliary_rows() -> None:
    target = TableTarget(CSMIA_TABLE)
    req = _request([0, 1, 0, 0], prior=[0.5, 0.5])
    for attack in (
        ImputationBaseline(),
        ConfidenceScoreAttack(),
        FredriksonMAP(prior="imputation"),
        FredriksonMAP(likelihood="confusion"),
    ):
        with pytest.raises(InvalidParameterError, match="needs auxiliary rows"):
            attack.run(target, req)


def test_model_attacks_need_a_target_and_scores() -> None:
    req = _request([0, 1, 0, 0], prior=[0.5, 0.5])
    with pytest.raises(TargetError, match="pass a target"):
        FredriksonMAP().run(None, req)
    labels_only = TableTarget(CSMIA_TABLE, OutputSpec(scores=False))
    with pytest.raises(TargetError, match="needs scores"):
        CSMIA().run(labels_only, req)
    with pytest.raises(TargetError, match="probability likelihood"):
        FredriksonMAP(likelihood="probability").run(labels_only, req)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: FredriksonMAP(prior="posterior"), "'prior'"),  # type: ignore[arg-type]
        (lambda: FredriksonMAP(epsilon=0.0), "'epsilon'"),
        (lambda: ConfidenceScoreAttack(training="both"), "'training'"),  # type: ignore[arg-type]
        (lambda: ImputationBaseline(attack_model="x"), "'attack_model'"),  # type: ignore[arg-type]
        (lambda: DecisionTreeWhiteBox(count_smoothing=-1.0), "'count_smoothing'"),
    ],
)
def test_configs_are_validated(make: object, match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        make()  # type: ignore[operator]


def test_configs_are_frozen_keyword_only_and_registered() -> None:
    attack = FredriksonMAP()
    with pytest.raises(dataclasses.FrozenInstanceError):
        attack.epsilon = 0.5  # type: ignore[misc]
    with pytest.raises(TypeError):
        FredriksonMAP("probability")  # type: ignore[call-arg]
    for name, cls in ATTACKS.items():
        instance = cls()
        assert isinstance(instance, AttributeAttack)
        assert instance.name == name


def test_attacks_share_the_final_run_of_the_base() -> None:
    for cls in ATTACKS.values():
        assert issubclass(cls, AttributeAttackBase)
        assert cls.run is AttributeAttackBase.run
    with pytest.raises(TypeError, match=r"overrides AttributeAttackBase\.run, which is final"):

        class Rogue(AttributeAttackBase):
            def run(self, *args: object, **kwargs: object) -> None:  # type: ignore[misc, override]
                return None


def test_the_base_times_seeds_and_counts_only_the_attacks_own_queries() -> None:
    """``_infer`` sees the run's Generator; queries before the run are not counted."""

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Probe(AttributeAttackBase):
        name = "probe"
        requires = frozenset({Capability.SCORES})

        @property
        def label(self) -> str:
            return "probe"

        def _infer(self, ctx: AttributeContext) -> Inference:
            ctx.queried.predict(ctx.request.x)
            n, k = ctx.request.n, ctx.request.attribute.k
            pred = ctx.rng.integers(k, size=n)
            return Inference(pred, np.full((n, k), 1.0 / k, dtype=np.float32), {"ok": True})

    target = TableTarget(CSMIA_TABLE)
    req = _request([0, 1, 0, 0], prior=[0.5, 0.5])
    target.predict(req.x)
    res = Probe().run(target, req, rng=4)
    assert res.queries == 4
    assert target.queries == 8
    assert res.seed == 4
    assert res.config == {}
    assert res.extra == {"ok": True}
    assert res.predictions.tolist() == np.random.default_rng(4).integers(2, size=4).tolist()
    assert (res.attack, res.label, res.attribute, res.values) == ("probe", "probe", "s", ("a", "b"))
    assert res.predictions.dtype == np.int64
    assert res.seconds >= 0.0
    with pytest.raises(TargetError, match="attack 'probe' queries the model: pass a target"):
        Probe().run(None, req)


def test_request_validation() -> None:
    x = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(InvalidParameterError, match="'prior'"):
        AttributeInferenceRequest(attribute=TWO, x=x, y=np.array([0, 1]), prior=np.array([1.0]))
    with pytest.raises(InvalidParameterError, match="occupies columns"):
        AttributeInferenceRequest(attribute=TWO, x=x[:, :2], y=np.array([0, 1]))
    aux = AuxiliaryRows(x=x, y=np.array([0, 1]), s=np.array([0, 5]))
    with pytest.raises(InvalidParameterError, match="auxiliary sensitive values"):
        AttributeInferenceRequest(attribute=TWO, x=x, y=np.array([0, 1]), auxiliary=aux)
    with pytest.raises(InvalidParameterError, match="'feature_groups'"):
        AttributeInferenceRequest(
            attribute=TWO, x=x, y=np.array([0, 1]), feature_groups=((0, 1), (2, 3))
        )


# --- on the real data --------------------------------------------------------------------------


def test_queries_are_counted_and_budgets_hold(
    sex: TabularScenario, sex_tree: TrainedTabularModel
) -> None:
    request, _ = sex.request("members", max_rows=200, seed=0)
    target = as_target(sex, sex_tree)
    res = FredriksonMAP().run(target, request)
    assert res.queries == target.queries == 200 * 2
    aux_n = len(request.auxiliary) if request.auxiliary is not None else 0
    res = ConfidenceScoreAttack().run(target, request)
    assert res.queries == (200 + aux_n) * 2
    tight = SklearnTarget(sex_tree.model, input_shape=(sex.encoder.n_features,), query_budget=399)
    with pytest.raises(InvGuardError, match="query budget of 399"):
        CSMIA().run(tight, request)
    assert tight.queries == 0  # refused before anything was answered


def test_attacks_are_deterministic_given_the_seed(
    sex: TabularScenario, sex_tree: TrainedTabularModel
) -> None:
    request, _ = sex.request("members", max_rows=300, seed=0)
    for attack in (
        ConfidenceScoreAttack(attack_model="gbdt"),
        ImputationBaseline(attack_model="gbdt"),
    ):
        a = attack.run(as_target(sex, sex_tree), request, rng=7)
        b = attack.run(as_target(sex, sex_tree), request, rng=np.random.default_rng(7))
        assert np.array_equal(a.predictions, b.predictions)
        assert a.seed == 7
        assert b.seed is None


def test_label_only_target_uses_the_confusion_matrix(
    sex: TabularScenario, sex_tree: TrainedTabularModel
) -> None:
    request, truth = sex.request("members", max_rows=500, seed=0)
    target = SklearnTarget(
        sex_tree.model, input_shape=(sex.encoder.n_features,), output=OutputSpec(scores=False)
    )
    res = FredriksonMAP().run(target, request)
    assert res.extra["likelihood"] == "confusion"
    aux_n = len(request.auxiliary) if request.auxiliary is not None else 0
    assert res.queries == 500 * 2 + aux_n
    assert np.mean(res.predictions == truth) > 0.6


def test_self_trained_confidence_attack_needs_no_auxiliary_rows(
    sex: TabularScenario, sex_tree: TrainedTabularModel
) -> None:
    request, truth = sex.request("members", max_rows=1000, seed=0, with_auxiliary=False)
    prior = np.array([0.33, 0.67])
    request = dataclasses.replace(request, prior=prior)
    res = ConfidenceScoreAttack(training="self").run(as_target(sex, sex_tree), request)
    assert res.extra["self_training_rows"] > 10
    assert res.queries == 2000
    assert np.mean(res.predictions == truth) > 0.6


def test_white_box_needs_a_scikit_learn_tree(
    sex: TabularScenario, sex_logreg: TrainedTabularModel
) -> None:
    request, _ = sex.request("members", max_rows=50, seed=0)
    with pytest.raises(TargetError, match="white-box access to a fitted scikit-learn decision"):
        DecisionTreeWhiteBox().run(as_target(sex, sex_logreg), request)


def _brute_force_mass(
    tree: object, x_ref: NDArray[np.float32], groups: tuple[tuple[int, int], ...], alpha: float
) -> NDArray[np.float64]:
    """The region masses by filtering the reference rows along every path (slow, obvious)."""
    t = tree.tree_  # type: ignore[attr-defined]
    group_of = np.zeros(x_ref.shape[1], dtype=int)
    for gi, (s, e) in enumerate(groups):
        group_of[s:e] = gi
    m = len(x_ref)
    z = np.ones(t.node_count)
    stack: list[tuple[int, dict[int, NDArray[np.bool_]], float]] = [(0, {}, 1.0)]
    while stack:
        node, masks, mass = stack.pop()
        z[node] = mass
        if t.children_left[node] < 0:
            continue
        f = t.feature[node]
        g = int(group_of[f])
        base = masks.get(g, np.ones(m, dtype=bool))
        p0 = (base.sum() + alpha) / (m + 2 * alpha)
        left = x_ref[:, f] <= t.threshold[node]
        for child, mask in (
            (t.children_left[node], base & left),
            (t.children_right[node], base & ~left),
        ):
            stack.append(
                (child, {**masks, g: mask}, mass * ((mask.sum() + alpha) / (m + 2 * alpha)) / p0)
            )
    return z


def test_region_masses_match_brute_force(sex: TabularScenario) -> None:
    small = train_tabular_model("tree", sex.train_x, sex.train_y, seed=0).model
    small.set_params(max_depth=8)
    small.fit(sex.train_x, sex.train_y)
    aux = sex.auxiliary()
    groups = sex.encoder.groups
    fast = _region_mass(small, _Marginals(aux.x, groups, 0.5))
    slow = _brute_force_mass(small, aux.x, groups, 0.5)
    np.testing.assert_allclose(fast, slow, rtol=1e-9)
    assert fast[0] == 1.0
