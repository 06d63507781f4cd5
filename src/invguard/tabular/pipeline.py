"""One attribute-inference assessment of a tabular model, from a plain spec: data, split, target,
attacked populations, attacks, and the headline numbers a finding is made of.

Both ``invguard tabular assess`` and an assessment config's tabular systems (``data: {tabular:
...}``) run through :func:`run_tabular`, so both report the same numbers for the same seed.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invguard.errors import InvalidParameterError, TargetError, check_int
from invguard.tabular._threads import limit_threads
from invguard.tabular.data import TabularData, TabularEncoder, load_adult, load_csv
from invguard.tabular.models import (
    TABULAR_ARCHS,
    encoding_path,
    load_tabular_target,
    tabular_target,
    train_tabular_model,
)
from invguard.tabular.report import TabularAssessment, run_assessment
from invguard.tabular.scenario import Population, TabularScenario, build_scenario
from invguard.targets.base import Capability, Target

BUILTIN_TABLES: tuple[str, ...] = ("adult",)

TargetFactory = Callable[[TabularScenario], Target]


@dataclass(frozen=True, kw_only=True)
class TabularSpec:
    """What to assess: the table (built-in or CSV), the sensitive column, the model, the rows.

    The model is a target factory given to :func:`run_tabular` (e.g. an HTTP endpoint), else
    ``arch`` (a reference model trained on the documented split), else ``model`` (a ``.skops`` or
    ``.onnx`` file; its saved encoding is read from beside it unless ``encoding`` is given).
    """

    sensitive: str
    dataset: str = "adult"
    csv: Path | None = None
    label: str | None = None
    categorical: tuple[str, ...] = ()
    arch: str | None = None
    model: Path | None = None
    encoding: Path | None = None
    rows: int = 5000
    non_members: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("rows", self.rows, minimum=1)
        check_int("seed", self.seed, minimum=0)
        if self.csv is None and self.dataset not in BUILTIN_TABLES:
            raise InvalidParameterError(
                f"The 'dataset' parameter must be one of {', '.join(BUILTIN_TABLES)}, "
                f"got {self.dataset!r}"
            )
        if self.csv is not None and not self.label:
            raise InvalidParameterError("'csv' needs 'label': the name of the label column")
        if self.csv is None and (self.label or self.categorical):
            raise InvalidParameterError("'label' and 'categorical' apply to 'csv' only")
        if self.arch is not None and self.arch not in TABULAR_ARCHS:
            raise InvalidParameterError(
                f"The 'arch' parameter must be one of {', '.join(TABULAR_ARCHS)}, got {self.arch!r}"
            )

    def load_data(self) -> TabularData:
        if self.csv is not None:
            assert self.label is not None
            return load_csv(self.csv, label=self.label, categorical=list(self.categorical))
        return load_adult()

    def encoder(self) -> TabularEncoder | None:
        """The model's saved encoding (given, or beside the model file), else None (fitted)."""
        if self.encoding is not None:
            return TabularEncoder.load(self.encoding)
        if self.model is not None and encoding_path(self.model).is_file():
            return TabularEncoder.load(encoding_path(self.model))
        return None


@dataclass
class TabularRun:
    """The assessment of each attacked population (members first), with the run's facts."""

    assessments: list[TabularAssessment]
    meta: dict[str, Any] = field(default_factory=dict)
    queries: int = 0

    def headline(self) -> dict[str, Any]:
        """The members' strongest attack against the imputation baseline (what a finding reports).

        ``lift`` is the share of the imputation baseline's errors that the attack gets right,
        ``(acc - acc_imputation) / (1 - acc_imputation)``; ``p_value`` is the exact one-sided
        McNemar test of the attack against imputation on the same rows.
        """
        members = self.assessments[0]
        imputation = next((r for r in members.rows if r.attack == "imputation"), None)
        prior = members.rows[0]
        base = imputation or prior
        attacks = [r for r in members.rows if not r.baseline]
        best = max(attacks, key=lambda r: r.metrics.accuracy, default=None)
        if best is None:
            raise TargetError("no attribute attack fits this model and data")
        test = best.mcnemar_imputation if imputation is not None else best.mcnemar_prior
        base_acc = base.metrics.accuracy
        lift = (best.metrics.accuracy - base_acc) / (1.0 - base_acc) if base_acc < 1.0 else 0.0
        out: dict[str, Any] = {
            "attribute": members.attribute,
            "values": len(members.values),
            "rows": best.metrics.n,
            "best_attack": best.label,
            "accuracy": best.metrics.accuracy,
            "mcc": best.metrics.mcc,
            "baseline": base.attack,
            "baseline_accuracy": base_acc,
            "prior_accuracy": prior.metrics.accuracy,
            "lift": lift,
            "p_value": 1.0 if test is None else test.p_value,
        }
        if len(self.assessments) > 1:  # the member/non-member contrast
            other = self.assessments[1]
            same = next((r for r in other.rows if r.label == best.label), None)
            out["non_member_accuracy"] = None if same is None else same.metrics.accuracy
        return out


def _model_name(spec: TabularSpec, factory: TargetFactory | None) -> str:
    if spec.model is not None:
        return spec.model.name
    if spec.arch is not None:
        return f"reference {spec.arch}"
    return "the endpoint" if factory is not None else "the model"


def _target(spec: TabularSpec, scenario: TabularScenario, factory: TargetFactory | None) -> Target:
    n, k = scenario.encoder.n_features, scenario.num_classes
    if factory is not None:
        return factory(scenario)
    if spec.arch is not None:
        trained = train_tabular_model(
            spec.arch, scenario.train_x, scenario.train_y, num_classes=k, seed=spec.seed
        )
        return tabular_target(trained.model, n_features=n, num_classes=k)
    if spec.model is None:
        raise InvalidParameterError("a tabular assessment needs 'arch', 'model' or an endpoint")
    return load_tabular_target(spec.model, encoder=scenario.encoder)


def run_tabular(
    spec: TabularSpec,
    *,
    target_factory: TargetFactory | None = None,
    model_name: str | None = None,
) -> TabularRun:
    """Attack ``spec.sensitive`` of the model's training rows (and held-out rows if asked)."""
    data = spec.load_data()
    data.check_sensitive(spec.sensitive)
    name = model_name or _model_name(spec, target_factory)
    scenario = build_scenario(
        data, spec.sensitive, seed=spec.seed, encoder=spec.encoder(), model_name=name
    )
    populations: list[Population] = ["members"]
    if spec.non_members:
        populations.append("non-members")
    assessments = []
    with ExitStack() as stack:
        stack.enter_context(limit_threads(1))  # small models: one thread is fastest on shared CPUs
        target = _target(spec, scenario, target_factory)
        if hasattr(target, "__exit__"):
            stack.enter_context(target)  # type: ignore[arg-type]
        if Capability.SCORES not in target.capabilities:
            raise TargetError(
                f"{name} outputs labels only, no class scores (it has no predict_proba): "
                "attribute inference needs a model that returns scores"
            )
        for population in populations:
            request, truth = scenario.request(population, max_rows=spec.rows, seed=spec.seed)
            assessments.append(
                run_assessment(
                    target, request, truth, rng=spec.seed, model=name, population=population
                )
            )
        queries = target.queries
    meta = {
        "data": data.name,
        "model": name,
        "sensitive": spec.sensitive,
        "seed": spec.seed,
        "split": scenario.split.summary(),
        "features": scenario.encoder.n_features,
    }
    return TabularRun(assessments, meta, queries)


__all__ = ["BUILTIN_TABLES", "TabularRun", "TabularSpec", "run_tabular"]
