"""Attribute inference on tabular classifiers: the original model inversion, and its baselines.

Threat model: the attacker knows every feature of a target record except one sensitive, categorical
attribute, knows the record's true label, and can query the model (or, for the white-box tree
attack, read it). Each attack is a frozen keyword-only config with
``run(target, request, *, rng) -> AttributeInferenceResult``; every candidate of every row goes to
the model in one batched ``predict`` call, and the queries are counted by the target. They share
:class:`AttributeAttackBase`, whose final ``run`` does the bookkeeping (the clock, the seed, the
target's presence and capabilities, the query count, the result) around each attack's ``_infer``.

- :class:`FredriksonMAP`: the black-box MAP estimator of Fredrikson et al., "Privacy in
  Pharmacogenetics" (USENIX Security 2014): ``argmax_v pi(y | f(x_K, v)) * p(v)``, with ``pi`` the
  model's probability of the true label, or, for label-only models, its confusion matrix estimated
  on auxiliary rows; ``p`` is the attribute's marginal prior (or, optionally, a prior conditioned
  on the known features and learned from auxiliary rows).
- :class:`DecisionTreeWhiteBox`: the white-box decision-tree attack of Fredrikson, Jha and
  Ristenpart (CCS 2015), using the tree's paths and the training counts at its leaves.
- :class:`CSMIA`: the confidence-score attack of Mehnaz et al., "Are Your Sensitive Attributes
  Private?" (USENIX Security 2022): a decision rule over which candidates reproduce the true label.
- :class:`ConfidenceScoreAttack`: an attack model trained on the target's confidence scores for
  every candidate (Mehnaz et al.'s confidence-modelling attack), on auxiliary rows, or on the
  target rows that a unique candidate explains (their label-only LOMIA's self-training).
- Baselines that every result must beat: :class:`PriorBaseline` (always the most common value) and
  :class:`ImputationBaseline` (a model of the attribute from the other features and the label,
  which never sees the target model: Jayaraman and Evans, USENIX Security 2022, show that many
  "attribute inference" results are this imputation).
"""

from __future__ import annotations

import abc
import bisect
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, final, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from invguard.errors import InvalidParameterError, TargetError, check_choice, check_float
from invguard.params import as_generator, config_dict, refuse_run_override
from invguard.tabular._threads import limit_threads
from invguard.tabular.data import SensitiveAttribute
from invguard.targets.base import Capability, Target, require

AttackModelKind = Literal["gbdt", "logreg"]
ATTACK_MODELS: tuple[str, ...] = ("gbdt", "logreg")


# --- request and result ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, eq=False)
class AuxiliaryRows:
    """Rows the attacker holds in full: encoded features ``x`` (sensitive columns included),
    label indices ``y`` and sensitive value indices ``s``. They must not be the target rows."""

    x: NDArray[np.float32]
    y: NDArray[np.int64]
    s: NDArray[np.int64]

    def __post_init__(self) -> None:
        x = np.asarray(self.x, dtype=np.float32)
        y = np.asarray(self.y)
        s = np.asarray(self.s)
        if x.ndim != 2 or y.shape != (len(x),) or s.shape != (len(x),) or len(x) == 0:
            raise InvalidParameterError(
                f"auxiliary rows need x (m, features), y (m,) and s (m,) with m >= 1, got "
                f"{x.shape}, {y.shape} and {s.shape}"
            )
        if not (np.issubdtype(y.dtype, np.integer) and np.issubdtype(s.dtype, np.integer)):
            raise InvalidParameterError("auxiliary y and s must be integer indices")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y.astype(np.int64))
        object.__setattr__(self, "s", s.astype(np.int64))

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True, kw_only=True, eq=False)
class AttributeInferenceRequest:
    """The rows to attack and the attacker's side knowledge.

    ``x``: encoded target rows ``(n, features)``; their sensitive columns are zeroed on
    construction, so no attack can read the answer. ``y``: their true label indices.
    ``auxiliary``: rows the attacker holds in full (for priors, attack models, confusion matrices
    and feature marginals). ``prior``: the attribute's marginal distribution, when known from public
    statistics; otherwise it is estimated from the auxiliary rows. ``feature_groups``: the
    ``[start, stop)`` columns of each source column (one-hot blocks), for the white-box tree attack.
    """

    attribute: SensitiveAttribute
    x: NDArray[np.float32]
    y: NDArray[np.int64]
    auxiliary: AuxiliaryRows | None = None
    prior: NDArray[np.float64] | None = None
    feature_groups: tuple[tuple[int, int], ...] | None = None

    def __post_init__(self) -> None:
        x = np.array(self.x, dtype=np.float32, copy=True)
        y = np.asarray(self.y)
        if x.ndim != 2 or len(x) == 0 or y.shape != (len(x),):
            raise InvalidParameterError(
                f"a request needs x (n, features) and y (n,) with n >= 1, got {x.shape} and "
                f"{y.shape}"
            )
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise InvalidParameterError("the labels y must be integer class indices >= 0")
        a = self.attribute
        if a.stop > x.shape[1]:
            raise InvalidParameterError(
                f"sensitive attribute '{a.name}' occupies columns [{a.start}, {a.stop}), but the "
                f"rows have {x.shape[1]} columns"
            )
        x[:, a.columns] = 0.0
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y.astype(np.int64))
        if self.auxiliary is not None:
            aux = self.auxiliary
            if aux.x.shape[1] != x.shape[1]:
                raise InvalidParameterError(
                    f"auxiliary rows have {aux.x.shape[1]} columns, target rows {x.shape[1]}"
                )
            if aux.s.min() < 0 or aux.s.max() >= a.k:
                raise InvalidParameterError(
                    f"auxiliary sensitive values must be indices in [0, {a.k}), got "
                    f"[{aux.s.min()}, {aux.s.max()}]"
                )
        if self.prior is not None:
            p = np.asarray(self.prior, dtype=np.float64)
            if p.shape != (a.k,) or not np.isfinite(p).all() or p.min() < 0 or p.sum() <= 0:
                raise InvalidParameterError(
                    f"The 'prior' parameter must be {a.k} non-negative weights, got {self.prior!r}"
                )
            object.__setattr__(self, "prior", p / p.sum())
        if self.feature_groups is not None:
            groups = tuple((int(s), int(e)) for s, e in self.feature_groups)
            pos = 0
            for s, e in groups:
                if s != pos or e <= s:
                    raise InvalidParameterError(
                        "The 'feature_groups' parameter must cover the columns in order, "
                        "without gaps"
                    )
                pos = e
            if pos != x.shape[1]:
                raise InvalidParameterError(
                    f"The 'feature_groups' parameter covers {pos} columns, the rows have "
                    f"{x.shape[1]}"
                )
            object.__setattr__(self, "feature_groups", groups)

    @property
    def n(self) -> int:
        return len(self.x)

    def marginal(self) -> NDArray[np.float64] | None:
        """The attribute's prior: given, or from the auxiliary rows (add-1/2 smoothed), or None."""
        if self.prior is not None:
            return self.prior
        if self.auxiliary is None:
            return None
        counts = np.bincount(self.auxiliary.s, minlength=self.attribute.k) + 0.5
        out: NDArray[np.float64] = counts / counts.sum()
        return out

    def require_marginal(self, attack: str) -> NDArray[np.float64]:
        p = self.marginal()
        if p is None:
            raise InvalidParameterError(
                f"attack '{attack}' needs the attribute's prior: pass prior= or auxiliary rows"
            )
        return p

    def require_auxiliary(self, attack: str) -> AuxiliaryRows:
        if self.auxiliary is None:
            raise InvalidParameterError(
                f"attack '{attack}' needs auxiliary rows (records the attacker holds in full)"
            )
        return self.auxiliary

    def known(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """``x`` without the sensitive columns."""
        a = self.attribute
        out: NDArray[np.float32] = np.concatenate([x[:, : a.start], x[:, a.stop :]], axis=1)
        return out


def candidate_inputs(x: NDArray[np.float32], attribute: SensitiveAttribute) -> NDArray[np.float32]:
    """``(n * k, features)``: row ``i`` with candidate ``j`` at position ``i * k + j``."""
    n, k = len(x), attribute.k
    cand = np.repeat(x[:, None, :], k, axis=1)
    cand[:, :, attribute.columns] = attribute.encodings[None, :, :]
    out: NDArray[np.float32] = cand.reshape(n * k, x.shape[1])
    return out


def query_candidates(
    target: Target, x: NDArray[np.float32], attribute: SensitiveAttribute
) -> NDArray[np.float32]:
    """The target's scores ``(n, k, classes)`` for every candidate of every row, in one call."""
    scores = target.predict(candidate_inputs(x, attribute))
    out: NDArray[np.float32] = np.asarray(scores, dtype=np.float32).reshape(len(x), attribute.k, -1)
    return out


@dataclass
class AttributeInferenceResult:
    """One attack on ``n`` rows: the inferred value index of each row and what it cost.

    ``scores`` ``(n, k)``: the attack's belief in each candidate (a posterior for the MAP and
    model-based attacks; higher is more likely in every case). ``queries``: predictions the target
    answered; ``seconds``: wall time including attack-model training.
    """

    attack: str
    label: str
    attribute: str
    values: tuple[str, ...]
    predictions: NDArray[np.int64]
    scores: NDArray[np.float32]
    queries: int
    seconds: float
    config: dict[str, Any]
    seed: int | None
    extra: dict[str, Any] = field(default_factory=dict)

    def predicted_values(self) -> list[str]:
        return [self.values[i] for i in self.predictions.tolist()]

    def summary(self) -> dict[str, Any]:
        """JSON-ready description without the per-row arrays."""
        counts = np.bincount(self.predictions, minlength=len(self.values))
        return {
            "attack": self.attack,
            "label": self.label,
            "attribute": self.attribute,
            "rows": len(self.predictions),
            "predicted_counts": dict(zip(self.values, counts.tolist(), strict=True)),
            "queries": self.queries,
            "seconds": round(self.seconds, 4),
            "config": self.config,
            "seed": self.seed,
            **({"extra": self.extra} if self.extra else {}),
        }


@runtime_checkable
class AttributeAttack(Protocol):
    """An attribute inference attack (or baseline): frozen config, ``requires`` and ``run``."""

    name: ClassVar[str]
    requires: ClassVar[frozenset[Capability]]

    @property
    def label(self) -> str: ...

    def run(
        self,
        target: Target | None,
        request: AttributeInferenceRequest,
        *,
        rng: np.random.Generator | int = 0,
    ) -> AttributeInferenceResult: ...


# --- shared helpers -----------------------------------------------------------------------------


def _need_target(target: Target | None, attack: str) -> Target:
    if target is None:
        raise TargetError(f"attack '{attack}' queries the model: pass a target")
    return target


def _posterior(log_scores: NDArray[np.float64]) -> NDArray[np.float32]:
    z = log_scores - log_scores.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: NDArray[np.float32] = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return out


def _one_hot(idx: NDArray[np.int64], k: int) -> NDArray[np.float32]:
    out = np.zeros((len(idx), k), dtype=np.float32)
    out[np.arange(len(idx)), idx] = 1.0
    return out


def _label_one_hot(y: NDArray[np.int64], num_classes: int) -> NDArray[np.float32]:
    return _one_hot(np.minimum(y, num_classes - 1), num_classes)


def _attack_model(kind: str, seed: int, balanced: bool) -> Any:
    weight = "balanced" if balanced else None
    if kind == "gbdt":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            max_depth=3,
            max_iter=100,
            learning_rate=0.1,
            early_stopping=False,
            class_weight=weight,
            random_state=seed,
        )
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000, class_weight=weight)


def fit_predict_proba(
    kind: str,
    x_train: NDArray[np.float32],
    s_train: NDArray[np.int64],
    x_test: NDArray[np.float32],
    k: int,
    *,
    seed: int,
    balanced: bool = False,
    sample_weight: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """Train an attack model on ``(x_train, s_train)``; its ``(n_test, k)`` probabilities."""
    present = np.unique(s_train)
    out = np.zeros((len(x_test), k), dtype=np.float64)
    if len(present) == 1:
        out[:, int(present[0])] = 1.0
        return out
    model = _attack_model(kind, seed, balanced)
    with limit_threads(1):
        model.fit(x_train, s_train, sample_weight=sample_weight)
        proba = model.predict_proba(x_test)
    out[:, np.asarray(model.classes_, dtype=np.int64)] = proba
    return out


@dataclass(frozen=True, kw_only=True, eq=False)
class AttributeContext:
    """What :meth:`AttributeAttackBase.run` hands to an attack's ``_infer``: one run's inputs.

    ``target``: the target as passed (None allowed for attacks that query none); ``rng``: the
    run's numpy Generator; ``attack``: the attack's name, for error messages.
    """

    target: Target | None
    request: AttributeInferenceRequest
    rng: np.random.Generator
    attack: str

    @property
    def queried(self) -> Target:
        """The target, for an attack that queries it (``run`` has already checked it is there)."""
        return _need_target(self.target, self.attack)


@dataclass(frozen=True, eq=False)
class Inference:
    """What an attack's ``_infer`` returns: a value index and a belief ``(n, k)`` per row, and
    attack-specific, JSON-ready facts about the run."""

    predictions: NDArray[np.int64]
    scores: NDArray[np.float32]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class AttributeAttackBase(abc.ABC):
    """The shared base of the attribute inference attacks (the style of
    :class:`invguard.attacks.base.AttackBase`): a frozen keyword-only config with no fields.

    A subclass sets ``name``, ``requires`` and ``label`` and implements :meth:`_infer`. The final
    :meth:`run` starts the clock, checks ``rng``; for an attack that ``requires`` capabilities it
    refuses a missing target or one without them and counts the queries ``_infer`` sends (an
    attack that requires nothing reports 0); then it builds the :class:`AttributeInferenceResult`.
    """

    name: ClassVar[str]
    requires: ClassVar[frozenset[Capability]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        refuse_run_override(cls, "AttributeAttackBase", "_infer")

    @property
    @abc.abstractmethod
    def label(self) -> str:
        """A human-readable name of this configuration, for reports."""

    @final
    def run(
        self,
        target: Target | None,
        request: AttributeInferenceRequest,
        *,
        rng: np.random.Generator | int = 0,
    ) -> AttributeInferenceResult:
        """Infer the sensitive value of every row of ``request``; see :class:`AttributeAttack`."""
        start = time.perf_counter()
        gen, seed = as_generator(rng)
        queried: Target | None = None
        if self.requires:
            queried = _need_target(target, self.name)
            require(queried, self.requires, self.name)
        q0 = 0 if queried is None else queried.queries
        out = self._infer(
            AttributeContext(target=target, request=request, rng=gen, attack=self.name)
        )
        return AttributeInferenceResult(
            attack=self.name,
            label=self.label,
            attribute=request.attribute.name,
            values=request.attribute.values,
            predictions=out.predictions.astype(np.int64),
            scores=out.scores.astype(np.float32),
            queries=0 if queried is None else queried.queries - q0,
            seconds=time.perf_counter() - start,
            config=config_dict(self),
            seed=seed,
            extra=out.extra,
        )

    @abc.abstractmethod
    def _infer(self, ctx: AttributeContext) -> Inference:
        """The attack itself on ``ctx.request`` (all rows at once)."""


def _check_attack_model(kind: str) -> None:
    check_choice("attack_model", kind, ATTACK_MODELS)


# --- baselines ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PriorBaseline(AttributeAttackBase):
    """Always guess the most common value (the attribute's prior mode); never queries the model."""

    name: ClassVar[str] = "prior"
    requires: ClassVar[frozenset[Capability]] = frozenset()

    @property
    def label(self) -> str:
        return "baseline: prior (majority)"

    def _infer(self, ctx: AttributeContext) -> Inference:
        request = ctx.request
        p = request.require_marginal(self.name)
        pred = np.full(request.n, int(np.argmax(p)), dtype=np.int64)
        return Inference(pred, np.tile(p.astype(np.float32), (request.n, 1)))


@dataclass(frozen=True, kw_only=True)
class ImputationBaseline(AttributeAttackBase):
    """An attack model that sees the other features and the label but never the target model.

    Trained on the auxiliary rows. What a model-based attack achieves beyond this baseline is
    what the *model* leaks; the rest is inference from the population (Jayaraman and Evans 2022).
    """

    attack_model: AttackModelKind = "logreg"
    balanced: bool = False

    name: ClassVar[str] = "imputation"
    requires: ClassVar[frozenset[Capability]] = frozenset()

    def __post_init__(self) -> None:
        _check_attack_model(self.attack_model)

    @property
    def label(self) -> str:
        return "baseline: imputation (features + label, no model)"

    def _infer(self, ctx: AttributeContext) -> Inference:
        request = ctx.request
        aux = request.require_auxiliary(self.name)
        c = int(max(aux.y.max(), request.y.max())) + 1

        def features(x: NDArray[np.float32], y: NDArray[np.int64]) -> NDArray[np.float32]:
            return np.concatenate([request.known(x), _label_one_hot(y, c)], axis=1)

        proba = fit_predict_proba(
            self.attack_model,
            features(aux.x, aux.y),
            aux.s,
            features(request.x, request.y),
            request.attribute.k,
            seed=int(ctx.rng.integers(2**31 - 1)),
            balanced=self.balanced,
        )
        return Inference(proba.argmax(axis=1).astype(np.int64), proba.astype(np.float32))


# --- Fredrikson et al. 2014: black-box MAP ------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class FredriksonMAP(AttributeAttackBase):
    """Black-box MAP estimator of Fredrikson et al. (USENIX Security 2014).

    For each row and each candidate ``v``: ``log pi(y | f(x_K, v)) + log p(v)``, the most likely
    candidate wins. ``likelihood``: ``"probability"`` uses the model's probability of the true
    label; ``"confusion"`` uses only its predicted label and ``pi(y | y_hat)`` from the model's
    confusion matrix on the auxiliary rows (the paper's error model, for label-only models);
    ``"auto"`` picks the first when the target exposes scores. ``prior``: ``"marginal"`` is the
    paper's marginal ``p(v)``; ``"imputation"`` replaces it with ``p(v | x_K)`` learned from the
    auxiliary rows, so that the model's evidence is added to what the population already tells.
    ``epsilon`` floors the likelihood (a fully grown tree answers 0 and 1).
    """

    likelihood: Literal["auto", "probability", "confusion"] = "auto"
    prior: Literal["marginal", "imputation"] = "marginal"
    epsilon: float = 1e-6
    attack_model: AttackModelKind = "logreg"

    name: ClassVar[str] = "fredrikson-map"
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.LABELS})

    def __post_init__(self) -> None:
        check_choice("likelihood", self.likelihood, ("auto", "probability", "confusion"))
        check_choice("prior", self.prior, ("marginal", "imputation"))
        check_float("epsilon", self.epsilon, minimum=0.0, maximum=1.0, min_inclusive=False)
        _check_attack_model(self.attack_model)

    @property
    def label(self) -> str:
        parts = []
        if self.likelihood == "confusion":
            parts.append("confusion matrix")
        if self.prior == "imputation":
            parts.append("imputation prior")
        return "fredrikson-map" + (f" ({', '.join(parts)})" if parts else "")

    def _infer(self, ctx: AttributeContext) -> Inference:
        request, tgt = ctx.request, ctx.queried
        mode = self.likelihood
        if mode == "auto":
            mode = "probability" if Capability.SCORES in tgt.capabilities else "confusion"
        if mode == "probability":
            require(tgt, frozenset({Capability.SCORES}), f"{self.name} (probability likelihood)")
        k = request.attribute.k
        rows = np.arange(request.n)
        scores = query_candidates(tgt, request.x, request.attribute)
        if mode == "probability":
            lik = scores[rows, :, request.y].astype(np.float64)
        else:
            aux = request.require_auxiliary(f"{self.name} (confusion likelihood)")
            c = scores.shape[2]
            aux_pred = tgt.predict(aux.x).argmax(axis=1)
            conf = np.ones((c, c), dtype=np.float64)  # add-one smoothing
            np.add.at(conf, (aux_pred, np.minimum(aux.y, c - 1)), 1.0)
            conf /= conf.sum(axis=1, keepdims=True)  # row: predicted label -> true label
            lik = conf[scores.argmax(axis=2), np.minimum(request.y, c - 1)[:, None]]
        log_lik = np.log(np.maximum(lik, self.epsilon))
        if self.prior == "marginal":
            log_prior = np.log(request.require_marginal(self.name))[None, :]
        else:
            aux = request.require_auxiliary(f"{self.name} (imputation prior)")
            cond = fit_predict_proba(
                self.attack_model,
                request.known(aux.x),
                aux.s,
                request.known(request.x),
                k,
                seed=int(ctx.rng.integers(2**31 - 1)),
            )
            log_prior = np.log(np.maximum(cond, 1e-6))
        log_post = log_lik + log_prior
        pred = log_post.argmax(axis=1).astype(np.int64)
        return Inference(pred, _posterior(log_post), {"likelihood": mode})


# --- Fredrikson, Jha, Ristenpart 2015: white-box decision trees ----------------------------------


def _trees(target: Target | None, attack: str) -> list[Any]:
    est = getattr(target, "estimator", None)
    if est is not None and hasattr(est, "tree_"):
        return [est]
    members = getattr(est, "estimators_", None)
    if (
        isinstance(members, Sequence)
        and len(members) > 0
        and all(hasattr(m, "tree_") for m in members)
    ):
        return list(members)
    what = type(est).__name__ if est is not None else type(target).__name__
    raise TargetError(
        f"attack '{attack}' needs white-box access to a fitted scikit-learn decision tree or "
        f"random forest (a SklearnTarget), got {what}"
    )


def _leaf_counts(tree: Any) -> NDArray[np.float64]:
    """Training counts per node and class, ``(nodes, classes)``."""
    t = tree.tree_
    value = np.asarray(t.value, dtype=np.float64)[:, 0, :]
    if np.allclose(value.sum(axis=1), 1.0):  # scikit-learn >= 1.4 stores fractions
        value = value * np.asarray(t.weighted_n_node_samples, dtype=np.float64)[:, None]
    return value


class _Marginals:
    """Per-feature marginals of reference rows, for the masses of tree regions.

    A group of several columns that is one-hot in the reference rows keeps the count of each
    category (plus "none", an all-zero block) and tracks a path's allowed categories as a bit
    mask; any other column keeps its sorted values and tracks an interval ``(lo, hi]``. A path
    constraint narrows the mask or the interval; its mass is a cached count lookup.
    """

    def __init__(
        self, x_ref: NDArray[np.float32], groups: Sequence[tuple[int, int]], smoothing: float
    ) -> None:
        self.m = len(x_ref)
        self.smoothing = smoothing
        d = x_ref.shape[1]
        self.group_of: list[int] = [0] * d  # column -> group id
        self.slot: list[int] = [0] * d  # column -> category index in its one-hot group
        self.counts: dict[int, list[float]] = {}  # one-hot group -> category counts
        self.sorted: dict[int, list[float]] = {}  # single column -> sorted values
        self._cache: dict[tuple[int, int | float, float], float] = {}
        gid = 0
        for s, e in groups:
            block = x_ref[:, s:e]
            one_hot = e - s > 1 and bool(
                np.isin(block, (0.0, 1.0)).all() and (block.sum(axis=1) <= 1).all()
            )
            if one_hot:
                for c in range(s, e):
                    self.group_of[c] = gid
                    self.slot[c] = c - s
                codes = np.where(block.any(axis=1), block.argmax(axis=1), e - s)
                self.counts[gid] = np.bincount(codes, minlength=e - s + 1).astype(float).tolist()
                gid += 1
            else:  # each column on its own
                for c in range(s, e):
                    self.group_of[c] = gid
                    self.sorted[gid] = np.sort(x_ref[:, c]).astype(float).tolist()
                    gid += 1

    def initial(self, g: int) -> int | tuple[float, float]:
        if g in self.counts:
            return (1 << len(self.counts[g])) - 1
        return (-math.inf, math.inf)

    def split(
        self, g: int, col: int, threshold: float, state: int | tuple[float, float]
    ) -> tuple[int | tuple[float, float], int | tuple[float, float]]:
        """The states of the left (``x[col] <= threshold``) and right children."""
        if isinstance(state, tuple):
            lo, hi = state
            return (lo, min(hi, threshold)), (max(lo, threshold), hi)
        # the column is 1 for its own category and 0 for every other (and for "none")
        own = 1 << self.slot[col]
        if threshold >= 1.0:
            left = state
        elif threshold >= 0.0:
            left = state & ~own
        else:
            left = 0
        return left, state & ~left

    def mass(self, g: int, state: int | tuple[float, float]) -> float:
        key = (g, *state) if isinstance(state, tuple) else (g, state, 0.0)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if isinstance(state, tuple):
            values = self.sorted[g]
            lo, hi = state
            count = float(bisect.bisect_right(values, hi) - bisect.bisect_right(values, lo))
        else:
            count = sum(c for i, c in enumerate(self.counts[g]) if state >> i & 1)
        out = (count + self.smoothing) / (self.m + 2 * self.smoothing)
        self._cache[key] = out
        return out


def _region_mass(tree: Any, marginals: _Marginals) -> NDArray[np.float64]:
    """For every node, the mass of its region under independent per-feature marginals.

    ``Z(node) = prod_g P(x_g satisfies the node's path constraints on group g)``, each factor the
    (smoothed) share of reference rows that satisfy them; one depth-first pass over the tree.
    """
    t = tree.tree_
    z = [1.0] * t.node_count
    left = t.children_left.tolist()
    right = t.children_right.tolist()
    feature = t.feature.tolist()
    threshold = t.threshold.tolist()
    stack: list[tuple[int, dict[int, int | tuple[float, float]], float]] = [(0, {}, 1.0)]
    while stack:
        node, states, mass = stack.pop()
        z[node] = mass
        if left[node] < 0:
            continue
        f = feature[node]
        g = marginals.group_of[f]
        parent = states.get(g)
        if parent is None:
            parent = marginals.initial(g)
        p_parent = marginals.mass(g, parent)
        to_left, to_right = marginals.split(g, f, threshold[node], parent)
        for child, state in ((left[node], to_left), (right[node], to_right)):
            child_states = dict(states)
            child_states[g] = state
            stack.append((child, child_states, mass * marginals.mass(g, state) / p_parent))
    return np.asarray(z, dtype=np.float64)


@dataclass(frozen=True, kw_only=True)
class DecisionTreeWhiteBox(AttributeAttackBase):
    """White-box attack on scikit-learn decision trees (Fredrikson, Jha, Ristenpart, CCS 2015).

    The attacker reads the tree: its paths and the training counts at each leaf. For candidate
    ``v`` the known features and ``v`` select one leaf ``L_v``. The training rows at ``L_v`` with
    the true label, ``c(L_v, y)``, against the mass ``Z(L_v)`` that the leaf's region would hold if
    the features were independent with their marginals (estimated on the auxiliary rows), give
    the estimate ``p(v) * c(L_v, y) / Z(L_v)``: a leaf holding training rows of label ``y`` in a
    small region is strong evidence, as in the paper's count-weighted estimator. A random forest is
    attacked tree by tree (the mean of the per-tree log estimates). No query is sent: the model is
    evaluated locally; ``count_smoothing`` keeps empty leaves possible, ``mass_smoothing`` is added
    to the marginal counts.
    """

    count_smoothing: float = 1e-3
    mass_smoothing: float = 0.5

    name: ClassVar[str] = "fredrikson-tree"
    requires: ClassVar[frozenset[Capability]] = frozenset()

    def __post_init__(self) -> None:
        check_float("count_smoothing", self.count_smoothing, minimum=0.0, min_inclusive=False)
        check_float("mass_smoothing", self.mass_smoothing, minimum=0.0, min_inclusive=False)

    @property
    def label(self) -> str:
        return "fredrikson-tree (white-box)"

    def _infer(self, ctx: AttributeContext) -> Inference:
        request = ctx.request
        trees = _trees(ctx.target, self.name)
        aux = request.require_auxiliary(self.name)
        log_prior = np.log(request.require_marginal(self.name))
        d = request.x.shape[1]
        groups = request.feature_groups or tuple((i, i + 1) for i in range(d))
        marginals = _Marginals(aux.x, groups, self.mass_smoothing)
        n, k = request.n, request.attribute.k
        cand = candidate_inputs(request.x, request.attribute)
        total = np.zeros((n, k), dtype=np.float64)
        for tree in trees:
            leaves = np.asarray(tree.apply(cand)).reshape(n, k)
            counts = _leaf_counts(tree)
            classes = np.asarray(tree.classes_)
            col = np.searchsorted(classes, request.y)
            col_ok = (col < len(classes)) & (
                classes[np.minimum(col, len(classes) - 1)] == request.y
            )
            c = np.where(
                col_ok[:, None], counts[leaves, np.minimum(col, len(classes) - 1)[:, None]], 0.0
            )
            z = _region_mass(tree, marginals)
            total += np.log(c + self.count_smoothing) - np.log(z[leaves])
        log_post = log_prior[None, :] + total / len(trees)
        pred = log_post.argmax(axis=1).astype(np.int64)
        return Inference(pred, _posterior(log_post), {"white_box": True, "trees": len(trees)})


# --- Mehnaz et al. 2022 -----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CSMIA(AttributeAttackBase):
    """Confidence-score model inversion attack (Mehnaz et al., USENIX Security 2022).

    Query every candidate. If exactly one reproduces the true label, pick it; if several do, the
    one with the highest confidence in the true label; if none does, the one whose (wrong)
    prediction is least confident. Ties (the candidates reach the same leaf, say) go to the more
    common value under the prior, when one is known.
    """

    name: ClassVar[str] = "csmia"
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.SCORES})

    @property
    def label(self) -> str:
        return "csmia"

    def _infer(self, ctx: AttributeContext) -> Inference:
        request = ctx.request
        scores = query_candidates(ctx.queried, request.x, request.attribute).astype(np.float64)
        rows = np.arange(request.n)
        conf_y = scores[rows, :, request.y]
        match = scores.argmax(axis=2) == request.y[:, None]
        n_match = match.sum(axis=1)
        primary = np.where(
            (n_match == 1)[:, None],
            np.where(match, 1.0, -np.inf),
            np.where(
                (n_match > 1)[:, None],
                np.where(match, conf_y, -np.inf),
                -scores.max(axis=2),
            ),
        )
        tied = primary == primary.max(axis=1, keepdims=True)
        p = request.marginal()
        secondary = np.log(p)[None, :] if p is not None else -np.arange(request.attribute.k)[None]
        pred = np.where(tied, secondary, -np.inf).argmax(axis=1).astype(np.int64)
        total = conf_y.sum(axis=1, keepdims=True)
        belief = np.where(
            total > 0, conf_y / np.where(total > 0, total, 1.0), 1.0 / conf_y.shape[1]
        )
        cases = {
            "one_match": int(np.sum(n_match == 1)),
            "several_match": int(np.sum(n_match > 1)),
            "no_match": int(np.sum(n_match == 0)),
        }
        return Inference(pred, belief.astype(np.float32), {"cases": cases})


def _confidence_features(
    scores: NDArray[np.float32],
    y: NDArray[np.int64],
    known: NDArray[np.float32] | None,
    epsilon: float,
) -> NDArray[np.float32]:
    n, k, c = scores.shape
    rows = np.arange(n)
    conf_y = scores[rows, :, np.minimum(y, c - 1)].astype(np.float64)
    log_y = np.log(np.maximum(conf_y, epsilon))
    parts = [
        scores.reshape(n, k * c),
        (log_y - log_y.mean(axis=1, keepdims=True)).astype(np.float32),
        (scores.argmax(axis=2) == y[:, None]).astype(np.float32),
        _label_one_hot(y, c),
    ]
    if known is not None:
        parts.append(known)
    return np.concatenate(parts, axis=1).astype(np.float32)


@dataclass(frozen=True, kw_only=True)
class ConfidenceScoreAttack(AttributeAttackBase):
    """An attack model over the target's confidence scores for every candidate (Mehnaz et al. 2022).

    Features per row: the score vectors of all ``k`` candidates, the centred log-confidence in the
    true label, which candidates reproduce the label, the label itself and (``include_features``)
    the known features. ``training="auxiliary"``: the attack model learns from the auxiliary rows,
    whose sensitive values the attacker knows (their confidence-modelling attack).
    ``training="self"``: LOMIA's self-training, needing no auxiliary rows: the target rows that
    exactly one candidate explains take that candidate, and a model of the attribute from the
    label (and the known features), trained on them and reweighted to the prior, infers the rest.
    ``balanced`` weights the values equally (better G-mean on skewed attributes, lower accuracy).
    """

    attack_model: AttackModelKind = "logreg"
    include_features: bool = True
    training: Literal["auxiliary", "self"] = "auxiliary"
    balanced: bool = False
    epsilon: float = 1e-6

    name: ClassVar[str] = "confidence-model"
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.SCORES})

    def __post_init__(self) -> None:
        _check_attack_model(self.attack_model)
        check_choice("training", self.training, ("auxiliary", "self"))
        check_float("epsilon", self.epsilon, minimum=0.0, maximum=1.0, min_inclusive=False)

    @property
    def label(self) -> str:
        parts: list[str] = [self.attack_model]
        if self.training == "self":
            parts.append("self-trained")
        if not self.include_features:
            parts.append("label only" if self.training == "self" else "scores only")
        if self.balanced:
            parts.append("balanced")
        return f"confidence-model ({', '.join(parts)})"

    def _infer(self, ctx: AttributeContext) -> Inference:
        request, tgt = ctx.request, ctx.queried
        k = request.attribute.k
        scores = query_candidates(tgt, request.x, request.attribute)
        extra: dict[str, Any] = {}
        weight: NDArray[np.float64] | None = None
        unique: NDArray[np.bool_] | None = None
        pseudo: NDArray[np.int64] | None = None
        if self.training == "auxiliary":
            aux = request.require_auxiliary(self.name)
            aux_scores = query_candidates(tgt, aux.x, request.attribute)
            aux_known = request.known(aux.x) if self.include_features else None
            train_x = _confidence_features(aux_scores, aux.y, aux_known, self.epsilon)
            train_s = aux.s
            known = request.known(request.x) if self.include_features else None
            test_x = _confidence_features(scores, request.y, known, self.epsilon)
        else:
            # LOMIA: the rows that exactly one candidate explains are labelled with it; a model of
            # the attribute from the label (and the known features) learns from them
            match = scores.argmax(axis=2) == request.y[:, None]
            unique = match.sum(axis=1) == 1
            pseudo = match.argmax(axis=1).astype(np.int64)
            parts = [_label_one_hot(request.y, scores.shape[2])]
            if self.include_features:
                parts.append(request.known(request.x))
            test_x = np.concatenate(parts, axis=1)
            train_x, train_s = test_x[unique], pseudo[unique]
            extra["self_training_rows"] = int(unique.sum())
            prior = request.marginal()
            if prior is not None and len(train_s):
                # the rows a unique candidate explains are not a sample of the population:
                # reweight their values to the prior (a label-shift correction)
                found = np.bincount(train_s, minlength=k) / len(train_s)
                ratio = np.where(found > 0, prior / np.where(found > 0, found, 1.0), 0.0)
                weight = ratio[train_s]
        if len(train_s) == 0:
            p = request.require_marginal(self.name)
            proba = np.tile(p, (request.n, 1))
            extra["fallback"] = "no training rows: the prior"
        else:
            proba = fit_predict_proba(
                self.attack_model,
                train_x,
                train_s,
                test_x,
                k,
                seed=int(ctx.rng.integers(2**31 - 1)),
                balanced=self.balanced,
                sample_weight=weight,
            )
        if unique is not None and pseudo is not None:
            proba[unique] = _one_hot(pseudo[unique], k)
        return Inference(proba.argmax(axis=1).astype(np.int64), proba.astype(np.float32), extra)


ATTACKS: dict[str, type[Any]] = {
    "prior": PriorBaseline,
    "imputation": ImputationBaseline,
    "fredrikson-map": FredriksonMAP,
    "fredrikson-tree": DecisionTreeWhiteBox,
    "csmia": CSMIA,
    "confidence-model": ConfidenceScoreAttack,
}
