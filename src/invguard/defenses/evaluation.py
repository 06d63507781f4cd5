"""Measure each defence: test accuracy against the leakage of the attacks that fit it.

For every candidate defence the evaluation builds the defended target, measures its test accuracy,
runs the attacks that fit it and judges the reconstructions with the independent evaluation model:

* training-time defences (:mod:`invguard.defenses.training`) retrain the same architecture on the
  same data and face the *white-box* attacks (MI-FACE, or a generative-prior attack such as PPA,
  whose image prior ``priors`` gives for each model): whoever holds the weights;
* output defences (:mod:`invguard.defenses.wrappers`) wrap the undefended target and face the
  *black-box* attacks that their output still allows (scores: the zeroth-order score attack and
  learned inversion; labels only: the label-only attack), since they only help against an API user.

The undefended model faces both suites. Each threat model (weights exposed: the undefended model
and the training defences against the white-box attacks; API only: the undefended model and the
output defences against the black-box attacks) is compared on its own: a row's *leakage* is the
highest top-1 of that threat's attacks on it; the Pareto front and the recommendation (lowest
leakage within an accuracy budget, ties broken by the mean top-1 over the attacks,
:func:`invguard.defenses.selection.recommend`) are computed on (test accuracy, leakage).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from invguard.attacks.base import Attack, AttackResult, InversionRequest
from invguard.data.base import ImageDataset
from invguard.defenses.selection import TradeOff, pareto_front, recommend
from invguard.defenses.training import Architecture, TrainingDefense, arch_name
from invguard.defenses.wrappers import OutputDefense
from invguard.errors import InvalidParameterError, InvGuardError, check_float
from invguard.judges import Calibration, JudgePanel, calibrate, judge_images, run_calibration
from invguard.metrics import Evaluator, evaluate_inversion
from invguard.models.cache import ModelCache
from invguard.priors.base import ImagePrior
from invguard.targets.base import Capability, Target
from invguard.targets.output import TargetView
from invguard.targets.pytorch import TorchTarget

log = logging.getLogger(__name__)

StepFn = Callable[[str], None]
"""``step(message)``: called before each defence is trained or attacked (drives a progress line)."""

PriorFn = Callable[[str, Target], ImagePrior | None]
"""``prior(attack_name, target)``: the image prior a generative-prior attack uses against
``target`` (None for an attack that needs none). Called before each attack run; a prior that depends
on the public data only is best prepared once and returned for every target."""

GALLERY_SIZE = 10


@dataclass
class AttackScore:
    """One attack against one (defended) model, judged by the evaluation model."""

    attack: str
    top1: float  # the judges' verdict when a panel judged, else the evaluation model's
    top5: float
    knn_distance: float
    queries: int
    seconds: float
    evaluation_model_top1: float | None = None
    judges_top1: dict[str, float] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class DefenseRow:
    """One candidate: the undefended model (``kind='none'``), a training or an output defence."""

    name: str
    kind: str  # "none", "training" or "output"
    defense: str
    params: dict[str, Any]
    description: str
    test_accuracy: float | None = None
    attacks: dict[str, AttackScore] = field(default_factory=dict)
    train_seconds: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    gallery: NDArray[np.float32] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "defense": self.defense,
            "params": self.params,
            "description": self.description,
            "test_accuracy": self.test_accuracy,
            "attacks": {k: v.to_dict() for k, v in self.attacks.items()},
            "train_seconds": round(self.train_seconds, 3),
            "facts": self.facts,
            "error": self.error,
        }


THREATS: dict[str, str] = {
    "white-box": "the weights are exposed: white-box attacks against training-time defences",
    "black-box": "only the prediction API is exposed: black-box attacks against output defences",
}


@dataclass
class ThreatResult:
    """One threat model's comparison: its candidates, Pareto front and recommendation."""

    threat: str
    attacks: list[str]
    candidates: list[str]
    pareto: list[str]
    recommended: str | None
    recommendation: str

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "description": THREATS[self.threat]}


@dataclass
class DefenseEvaluation:
    """The measured table and, per threat model, the Pareto front and the recommendation within
    the accuracy budget."""

    dataset: str
    arch: str | None
    num_classes: int
    max_accuracy_drop: float
    rows: list[DefenseRow]
    threats: dict[str, ThreatResult]
    seconds: float

    @property
    def baseline(self) -> DefenseRow:
        return self.rows[0]

    def row(self, name: str) -> DefenseRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def threat_for(self, access: str) -> ThreatResult | None:
        """The comparison that answers a finding of this access level (None if not measured)."""
        return self.threats.get("white-box" if access == "white-box" else "black-box")

    def galleries(self) -> dict[str, NDArray[np.float32]]:
        """Each row's strongest reconstructions, keyed by the row's position (for storage)."""
        return {str(i): r.gallery for i, r in enumerate(self.rows) if r.gallery is not None}

    @staticmethod
    def from_dict(
        d: dict[str, Any], galleries: dict[str, NDArray[np.float32]] | None = None
    ) -> DefenseEvaluation:
        """The evaluation back from :meth:`to_dict` (and :meth:`galleries`)."""
        g = galleries or {}
        rows = [
            DefenseRow(
                name=r["name"],
                kind=r["kind"],
                defense=r["defense"],
                params=r["params"],
                description=r["description"],
                test_accuracy=r["test_accuracy"],
                attacks={k: AttackScore(**v) for k, v in r["attacks"].items()},
                train_seconds=float(r["train_seconds"]),
                facts=r["facts"],
                error=r["error"],
                gallery=g.get(str(i)),
            )
            for i, r in enumerate(d["rows"])
        ]
        threats = {
            k: ThreatResult(**{f: v[f] for f in ThreatResult.__dataclass_fields__})
            for k, v in d["threats"].items()
        }
        return DefenseEvaluation(
            dataset=d["dataset"],
            arch=d["arch"],
            num_classes=int(d["num_classes"]),
            max_accuracy_drop=float(d["max_accuracy_drop"]),
            rows=rows,
            threats=threats,
            seconds=float(d["seconds"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "arch": self.arch,
            "num_classes": self.num_classes,
            "chance": 1.0 / self.num_classes,
            "max_accuracy_drop": self.max_accuracy_drop,
            "rows": [r.to_dict() for r in self.rows],
            "threats": {k: v.to_dict() for k, v in self.threats.items()},
            "seconds": round(self.seconds, 3),
        }


def leakage(row: DefenseRow, attacks: Sequence[str]) -> float | None:
    """The strongest of ``attacks``' top-1 on ``row`` (None when none of them ran on it)."""
    return max((row.attacks[a].top1 for a in attacks if a in row.attacks), default=None)


def compare(
    threat: str, rows: Sequence[DefenseRow], attacks: Sequence[str], max_drop: float
) -> ThreatResult | None:
    """Compare, under one threat model, the undefended ``rows[0]`` with the rows of the fitting
    kind (training defences for "white-box", output defences for "black-box") on (test accuracy,
    strongest of ``attacks``' top-1): the Pareto front and the recommendation within ``max_drop``.
    None when the undefended row was not measured with these attacks or no defence of the kind
    was."""
    base = rows[0]
    if leakage(base, attacks) is None or base.test_accuracy is None:
        return None
    kind = "training" if threat == "white-box" else "output"
    measured = [
        r
        for r in rows
        if (r is base or r.kind == kind)
        and leakage(r, attacks) is not None
        and r.test_accuracy is not None
    ]
    if len(measured) < 2:
        return None  # no defence of this kind was measured: nothing to compare
    points = [
        TradeOff(r.name, float(r.test_accuracy or 0.0), float(leakage(r, attacks) or 0.0))
        for r in measured
    ]
    front = [measured[i].name for i in pareto_front(points)]
    mean = [
        float(np.mean([r.attacks[a].top1 for a in attacks if a in r.attacks])) for r in measured
    ]
    pick = recommend(points, base.test_accuracy, max_drop, tiebreak=mean)
    recommended = None if pick is None else measured[pick].name
    budget = f"{max_drop * 100:.1f} points of test accuracy"
    if recommended is None or recommended == base.name:
        text = (
            f"No evaluated {kind} defence lowered the measured {threat} leakage within {budget}; "
            "widen the budget or evaluate other defences (invguard defend evaluate)."
        )
    else:
        rec = next(r for r in measured if r.name == recommended)
        parts = [
            f"{a} top-1 {base.attacks[a].top1:.3f} -> {rec.attacks[a].top1:.3f}"
            for a in attacks
            if a in rec.attacks and a in base.attacks
        ]
        text = (
            f"Measured: {rec.name} ({kind} defence) gives the lowest {threat} leakage within "
            f"{budget}: {'; '.join(parts)}, test accuracy {base.test_accuracy:.3f} -> "
            f"{float(rec.test_accuracy or 0.0):.3f} (invguard defend evaluate)."
        )
    return ThreatResult(
        threat=threat,
        attacks=list(attacks),
        candidates=[r.name for r in measured],
        pareto=front,
        recommended=recommended,
        recommendation=text,
    )


def _fits(attack: Attack, target: Target) -> bool:
    return frozenset(attack.requires) <= target.capabilities


def _accuracy(target: Target, dataset: ImageDataset) -> float | None:
    """Test accuracy of ``target``'s answers (labels as the user sees them, after any defence)."""
    if len(dataset.y_test) == 0:
        return None
    scores = np.asarray(target.predict(dataset.x_test))
    return float(np.mean(scores.argmax(axis=1) == dataset.y_test))


def _describe(defense: TrainingDefense | OutputDefense) -> str:
    """A short name: the defence and the parameters that differ from their defaults."""
    if not dataclasses.is_dataclass(defense):
        return str(defense.name)
    parts = []
    for f in dataclasses.fields(defense):
        v = getattr(defense, f.name)
        if f.name == "recipe" or (f.default is not dataclasses.MISSING and v == f.default):
            continue
        if isinstance(v, tuple | list):
            parts.append(" + ".join(_describe(d) for d in v))
        else:
            parts.append(f"{f.name}={v}")
    if defense.name == "compose":
        return parts[0] if parts else "compose"
    return f"{defense.name}({', '.join(parts)})" if parts else str(defense.name)


def _params(defense: TrainingDefense | OutputDefense) -> dict[str, Any]:
    if dataclasses.is_dataclass(defense):
        out = {}
        for f in dataclasses.fields(defense):
            v = getattr(defense, f.name)
            if dataclasses.is_dataclass(v) and not isinstance(v, type):
                v = dataclasses.asdict(v)
            elif isinstance(v, tuple | list):
                v = [_params(d) if dataclasses.is_dataclass(d) else d for d in v]
            out[f.name] = v
        return out
    return {}


@dataclasses.dataclass
class Judging:
    """How attack runs are judged: the evaluation model, and the judge panel's verdict if given
    (calibrated once against the undefended model)."""

    evaluator: Evaluator
    panel: JudgePanel | None = None
    calibration: Calibration | None = None

    def score(self, result: AttackResult, dataset: ImageDataset) -> AttackScore:
        s = evaluate_inversion(result, self.evaluator, dataset).summary()
        out = AttackScore(
            attack=result.attack,
            top1=s["top1_accuracy"],
            top5=s["top5_accuracy"],
            knn_distance=s["knn_distance"],
            queries=result.queries,
            seconds=result.seconds,
        )
        if self.panel is not None:
            j = judge_images(
                self.panel, result.reconstructions, result.classes, self.calibration
            ).summary()
            out.evaluation_model_top1 = out.top1
            out.top1, out.top5 = j["verdict_top1"], j["verdict_top5"]
            out.judges_top1 = {n: v["top1"] for n, v in j["judges"].items()}
        return out


def _attack_row(
    row: DefenseRow,
    target: Target,
    attacks: Mapping[str, Attack],
    dataset: ImageDataset,
    judging: Judging,
    request: InversionRequest,
    seed: int,
    query_budget: int | None,
    priors: PriorFn | None = None,
) -> None:
    best = -1.0
    for name, attack in attacks.items():
        if not _fits(attack, target):
            continue
        white = Capability.GRADIENTS in attack.requires
        view = target if white else TargetView(target, query_budget=query_budget, own_count=True)
        try:
            prior = priors(name, view) if priors is not None else None
            run_request = request if prior is None else dataclasses.replace(request, prior=prior)
            result = attack.run(view, run_request, rng=seed)
        except InvGuardError as exc:  # e.g. an endpoint that fails mid-way: keep the others
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            row.error = (
                f"{name}: {reason}" if row.error is None else f"{row.error}; {name}: {reason}"
            )
            log.warning("attack %s on %s failed: %s", name, row.name, reason)
            continue
        score = judging.score(result, dataset)
        score.attack = name
        row.attacks[name] = score
        if score.top1 > best:
            best = score.top1
            row.gallery = result.reconstructions[:GALLERY_SIZE]


def evaluate_defenses(
    dataset: ImageDataset,
    baseline: Target,
    *,
    evaluator: Evaluator,
    panel: JudgePanel | None = None,
    arch: Architecture | None = None,
    training: Sequence[TrainingDefense] = (),
    output: Sequence[OutputDefense] = (),
    white_box: Mapping[str, Attack],
    black_box: Mapping[str, Attack],
    auxiliary_images: NDArray[np.float32] | None = None,
    public_data: ImageDataset | None = None,
    cache: ModelCache | None = None,
    seed: int = 0,
    max_accuracy_drop: float = 0.03,
    classes: Sequence[int] | None = None,
    query_budget: int | None = None,
    step: StepFn | None = None,
    priors: PriorFn | None = None,
    no_retraining: str | None = None,
) -> DefenseEvaluation:
    """Measure ``baseline`` and every defence of ``training`` and ``output`` on ``dataset``.

    ``arch`` is the architecture that training-time defences retrain: a reference architecture's
    name or the user's :class:`~invguard.defenses.training.UserArchitecture` (required when
    ``training`` is not empty, unless ``no_retraining`` says why the model cannot be retrained:
    then each training-time defence is reported as skipped with that reason). ``white_box``
    attacks run against the undefended model and the training-defended models; ``black_box`` attacks run against the undefended model and each output
    defence's wrapper whose output they fit. ``auxiliary_images`` (public, unlabelled) feed the
    attacks that use them; ``public_data`` (labelled) feeds transfer learning. A defence that cannot
    be trained on this data is reported with its error, not raised. ``query_budget`` caps every
    black-box attack run (each gets its own count). ``priors`` gives the generative-prior attacks
    (PPA, GMI, PLG-MI) among ``white_box`` their image prior for each model they attack; a prior
    that cannot be prepared is reported on the row, like an attack that cannot run.
    """
    check_float("max_accuracy_drop", max_accuracy_drop, minimum=0.0, maximum=1.0)
    if training and arch is None and no_retraining is None:
        raise InvalidParameterError(
            "The 'arch' parameter is required for training-time defences (the architecture to "
            "retrain), got None"
        )
    started = time.perf_counter()
    request = InversionRequest(classes=classes, auxiliary=auxiliary_images)
    say = step or (lambda _msg: None)
    camp = _Campaign(
        dataset,
        _judging(dataset, baseline, evaluator, panel, request, say),
        request,
        seed,
        query_budget,
        priors,
        say,
    )
    base = DefenseRow(
        name="none",
        kind="none",
        defense="none",
        params={},
        description="the undefended model",
        test_accuracy=_accuracy(baseline, dataset),
    )
    say("undefended model")
    camp.attack(base, baseline, {**white_box, **black_box})
    rows = [base]
    for d in training:
        rows.append(_training_row(d, arch, no_retraining, public_data, cache, white_box, camp))
    for o in output:
        rows.append(_output_row(o, baseline, black_box, camp))
    threats = {}
    for threat, suite in (("white-box", white_box), ("black-box", black_box)):
        result = compare(threat, rows, list(suite), max_accuracy_drop)
        if result is not None:
            threats[threat] = result
    return DefenseEvaluation(
        dataset=dataset.name,
        arch=None if arch is None else arch_name(arch),
        num_classes=dataset.num_classes,
        max_accuracy_drop=max_accuracy_drop,
        rows=rows,
        threats=threats,
        seconds=time.perf_counter() - started,
    )


@dataclasses.dataclass(frozen=True)
class _Campaign:
    """What every attack run of one evaluation shares: data, judging, request, seed and budgets."""

    dataset: ImageDataset
    judging: Judging
    request: InversionRequest
    seed: int
    query_budget: int | None
    priors: PriorFn | None
    say: StepFn

    def attack(
        self, row: DefenseRow, target: Target, attacks: Mapping[str, Attack], *, priors: bool = True
    ) -> None:
        _attack_row(
            row,
            target,
            attacks,
            self.dataset,
            self.judging,
            self.request,
            self.seed,
            self.query_budget,
            self.priors if priors else None,
        )


def _judging(
    dataset: ImageDataset,
    baseline: Target,
    evaluator: Evaluator,
    panel: JudgePanel | None,
    request: InversionRequest,
    say: StepFn,
) -> Judging:
    """The evaluation model, and the panel calibrated once against the undefended model."""
    if panel is None:
        return Judging(evaluator)
    say("calibrating the judges against the undefended model")
    cls = request.resolve_classes(baseline.num_classes)
    return Judging(evaluator, panel, calibrate(panel, run_calibration(dataset, cls, baseline)))


def _training_row(
    d: TrainingDefense,
    arch: Architecture | None,
    no_retraining: str | None,
    public_data: ImageDataset | None,
    cache: ModelCache | None,
    white_box: Mapping[str, Attack],
    camp: _Campaign,
) -> DefenseRow:
    """Retrain with training-time defence ``d``, then run the white-box attacks against it."""
    row = DefenseRow(
        name=_describe(d),
        kind="training",
        defense=d.name,
        params=_params(d),
        description=(d.__doc__ or "").strip().splitlines()[0],
    )
    if arch is None:
        row.error = f"skipped: {no_retraining}"
        return row
    camp.say(f"training {row.name}")
    try:
        defended = d.train(camp.dataset, arch, seed=camp.seed, cache=cache, auxiliary=public_data)
    except InvGuardError as exc:
        row.error = str(exc).splitlines()[0]
        log.warning("defence %s could not be trained: %s", row.name, row.error)
        return row
    row.test_accuracy = defended.test_accuracy
    row.train_seconds = defended.seconds
    row.facts = defended.facts
    target = TorchTarget(defended.model, input_shape=camp.dataset.image_shape)
    camp.say(f"attacking {row.name}")
    camp.attack(row, target, white_box)
    return row


def _output_row(
    o: OutputDefense, baseline: Target, black_box: Mapping[str, Attack], camp: _Campaign
) -> DefenseRow:
    """Wrap the undefended model in output defence ``o``; run the black-box attacks that fit."""
    row = DefenseRow(
        name=_describe(o),
        kind="output",
        defense=o.name,
        params=_params(o),
        description=o.describe(),
    )
    camp.say(f"attacking {row.name}")
    try:
        wrapped = o.wrap(baseline)
    except InvGuardError as exc:
        row.error = str(exc).splitlines()[0]
        return row
    row.test_accuracy = _accuracy(wrapped, camp.dataset)
    fitting = {k: a for k, a in black_box.items() if _fits(a, wrapped)}
    if not fitting:
        row.error = "no black-box attack fits this output (add auxiliary data for label-only)"
        return row
    camp.attack(row, wrapped, fitting, priors=False)
    return row


__all__ = [
    "THREATS",
    "AttackScore",
    "DefenseEvaluation",
    "DefenseRow",
    "PriorFn",
    "ThreatResult",
    "compare",
    "evaluate_defenses",
    "leakage",
]
