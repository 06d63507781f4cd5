"""Tabular systems in the assessment pipeline: a ``data: {tabular: ...}`` system becomes one
attribute-inference job, whose outcome becomes a finding measured against the imputation baseline.

The job runs :func:`invguard.tabular.pipeline.run_tabular`, the same code as ``invguard tabular
assess``: the prior and imputation baselines, then every attack the model allows, on the model's
training rows (and held-out rows with ``non_members``). The finding's lift is the share of the
imputation baseline's errors that the strongest attack gets right; its significance is the exact
one-sided McNemar test of that attack against imputation on the same rows.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from invguard.assess.availability import endpoint_failure
from invguard.assess.config import (
    AttackConfig,
    ConfigError,
    HttpTarget,
    OnnxTarget,
    SklearnTarget,
    SystemConfig,
    TabularData,
    TabularReferenceTarget,
)
from invguard.assess.findings import Finding, Leakage, tabular_finding
from invguard.assess.jobs import JobOutcome
from invguard.assess.systems import file_sha256
from invguard.catalog.attacks import AUTO, TABULAR_ATTACKS
from invguard.errors import DataError, InvGuardError
from invguard.models.sources import HttpOptions, SourceContext
from invguard.models.sources import http_target as source_http_target
from invguard.tabular.data import TabularEncoder, split_rows
from invguard.tabular.models import tabular_target
from invguard.tabular.pipeline import TabularRun, TabularSpec, run_tabular
from invguard.tabular.scenario import TabularScenario
from invguard.targets.base import Target
from invguard.targets.http import HttpTarget as HttpAdapter
from invguard.targets.onnx import OnnxTarget as OnnxAdapter
from invguard.targets.sklearn import load_sklearn_model


def is_tabular(system: SystemConfig) -> bool:
    return isinstance(system.data, TabularData)


def tabular_spec(system: SystemConfig, where: str, resolve: Any) -> TabularSpec:
    """The run spec of a tabular system; files resolved against the config's folder."""
    assert isinstance(system.data, TabularData)
    t = system.data.tabular
    csv = resolve(t.csv) if t.csv is not None else None
    if csv is not None and not Path(csv).is_file():
        raise ConfigError(f"{where}.data.tabular.csv: file not found: {t.csv}")
    model = None
    if isinstance(system.target, SklearnTarget | OnnxTarget):
        model = resolve(system.target.model)
        if not Path(model).is_file():
            raise ConfigError(f"{where}.target.model: model file not found: {system.target.model}")
    encoding = resolve(t.encoding) if t.encoding is not None else None
    try:
        return TabularSpec(
            sensitive=t.sensitive,
            dataset=t.dataset or "adult",
            csv=csv,
            label=t.label,
            categorical=tuple(t.categorical),
            arch=system.target.arch if isinstance(system.target, TabularReferenceTarget) else None,
            model=model,
            encoding=encoding,
            rows=t.rows,
            non_members=t.non_members,
            seed=t.seed,
        )
    except InvGuardError as exc:
        raise ConfigError(f"{where}.data.tabular: {exc}") from exc


def expand_tabular_attacks(system: SystemConfig) -> SystemConfig:
    """``auto`` on a tabular system is the attribute-inference job (listed once)."""
    attacks: list[AttackConfig] = []
    for atk in system.attacks:
        entry = atk if atk.name != AUTO else atk.model_copy(update={"name": "attribute"})
        if all(a.name != entry.name for a in attacks):
            attacks.append(entry)
    return system.model_copy(update={"attacks": attacks})


def tabular_fingerprint(system: SystemConfig, spec: TabularSpec, where: str) -> str:
    """What the job's result depends on: the spec, the model file's or CSV's content, and an
    endpoint's answers to fixed canary rows."""
    target = system.target.model_dump(mode="json")
    target.pop("headers", None)  # may hold secrets; never part of a stored key
    parts: dict[str, Any] = {
        "spec": {k: str(v) for k, v in sorted(vars(spec).items())},
        "target": target,
    }
    if isinstance(system.target, HttpTarget):
        parts["endpoint"] = _endpoint_digest(system.target, spec, where)
    for name in ("model", "csv", "encoding"):
        path = getattr(spec, name)
        if path is not None:
            parts[f"{name}_sha256"] = file_sha256(Path(path))
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def target_info(system: SystemConfig, spec: TabularSpec) -> dict[str, Any]:
    """The target's description in reports (what it is and how it is reached)."""
    t = system.target
    info: dict[str, Any] = {"type": t.type, "test_accuracy": None, "access": "scores"}
    if isinstance(t, TabularReferenceTarget):
        return {
            **info,
            "name": f"reference {t.arch}",
            "source": "trained by InvGuard on the table's documented training split",
        }
    source = str(spec.model) if spec.model is not None else str(getattr(t, "url", ""))
    return {**info, "name": Path(source).name or source, "source": source}


def _factory(system: SystemConfig, spec: TabularSpec) -> Any:
    """How the job builds a target that the tabular pipeline does not build itself."""
    t = system.target
    if isinstance(t, SklearnTarget):  # honours the config's trusted skops types

        def sklearn(scenario: TabularScenario) -> Target:
            assert spec.model is not None
            est = load_sklearn_model(spec.model, trusted=t.trusted)
            n = scenario.encoder.n_features
            fitted = getattr(est, "n_features_in_", None)
            if fitted is not None and int(fitted) != n:
                raise DataError(
                    f"model file {spec.model.name} takes {int(fitted)} input features, but the "
                    f"data encode to {n}: it was trained on other columns or another encoding"
                )
            return tabular_target(est, n_features=n, num_classes=scenario.num_classes)

        return sklearn
    if isinstance(t, OnnxTarget):

        def onnx(scenario: TabularScenario) -> Target:
            assert spec.model is not None
            return OnnxAdapter(
                spec.model,
                input_shape=(scenario.encoder.n_features,),
                num_classes=scenario.num_classes,
                model_output=t.model_output,
            )

        return onnx
    if isinstance(t, HttpTarget):

        def http(scenario: TabularScenario) -> Target:
            return _endpoint(t, scenario.encoder.n_features, scenario.num_classes)

        return http
    return None


def _endpoint(t: HttpTarget, n_features: int, num_classes: int) -> HttpAdapter:
    ctx = SourceContext("target", Path, (n_features,), num_classes)
    return source_http_target(
        t, ctx, output=t.output.spec(), options=HttpOptions(concurrency=t.concurrency)
    )


CANARY_ROWS = 4


def _endpoint_digest(t: HttpTarget, spec: TabularSpec, where: str) -> str:
    """The endpoint's answers to a few fixed rows: if its model changes, so does the job key."""
    data = spec.load_data()
    encoder = spec.encoder()
    if encoder is None:
        encoder = TabularEncoder.fit(data, split_rows(data.labels(), seed=spec.seed).train)
    canary = np.random.default_rng(20240601).random(
        (CANARY_ROWS, encoder.n_features), dtype=np.float32
    )
    try:
        with _endpoint(t, encoder.n_features, len(encoder.classes)) as probe:
            answers = probe.predict(canary)
    except InvGuardError as exc:
        raise endpoint_failure(exc, f"{where}.target.url") from exc
    return hashlib.sha256(np.round(answers.astype(np.float64), 4).tobytes()).hexdigest()


def run_tabular_job(system: SystemConfig, spec: TabularSpec, outcome: JobOutcome) -> None:
    """Run the attribute-inference job into ``outcome`` (status, metrics, summary)."""
    factory = _factory(system, spec)
    run: TabularRun = run_tabular(
        spec,
        target_factory=factory,
        model_name=target_info(system, spec)["name"],
    )
    outcome.status = "ok"
    outcome.metrics = {
        "kind": "tabular",
        "headline": run.headline(),
        "assessments": [a.to_dict() for a in run.assessments],
        "meta": run.meta,
    }
    outcome.per_class = []
    outcome.attack_summary = {
        "attack": "attribute",
        "queries": run.queries,
        "seconds": round(sum(r.seconds for a in run.assessments for r in a.rows), 3),
    }


def tabular_attack_finding(
    system_id: str, attack: str, outcomes: list[JobOutcome]
) -> tuple[Finding, Leakage]:
    info = TABULAR_ATTACKS[attack]
    return tabular_finding(
        system=system_id,
        rule_id=info.rule_id,
        title=info.title,
        attack=attack,
        access=info.access,
        outcomes=[o.metrics for o in outcomes],
    )


__all__ = [
    "expand_tabular_attacks",
    "is_tabular",
    "run_tabular_job",
    "tabular_attack_finding",
    "tabular_fingerprint",
    "tabular_spec",
    "target_info",
]
