"""Run attribute inference attacks beside their baselines, and report them (table, JSON, Markdown).

Every attack is scored on the same rows as the two baselines (the prior's majority guess and the
imputation model that never sees the target). An attack's *advantage* is the difference in
accuracy, G-mean and MCC; its significance is the one-sided exact McNemar p-value of "the attack is
right more often than the baseline" (:func:`~invguard.tabular.metrics.mcnemar_test`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from invguard.errors import InvalidParameterError
from invguard.tabular.attacks import (
    CSMIA,
    AttributeAttack,
    AttributeInferenceRequest,
    AttributeInferenceResult,
    ConfidenceScoreAttack,
    DecisionTreeWhiteBox,
    FredriksonMAP,
    ImputationBaseline,
    PriorBaseline,
)
from invguard.tabular.metrics import (
    AttributeMetrics,
    McNemarResult,
    advantage,
    attribute_metrics,
    mcnemar_test,
)
from invguard.targets.base import Capability, Target

REPORT_FORMAT = "invguard-tabular-assessment"


def is_whitebox_tree(target: Target) -> bool:
    """Whether ``target`` wraps a scikit-learn decision tree or random forest."""
    est = getattr(target, "estimator", None)
    if est is None:
        return False
    if hasattr(est, "tree_"):
        return True
    members = getattr(est, "estimators_", None)
    return isinstance(members, list) and bool(members) and hasattr(members[0], "tree_")


def default_attacks(target: Target, *, with_auxiliary: bool = True) -> list[AttributeAttack]:
    """The attacks that fit ``target``'s capabilities (and the auxiliary data at hand).

    LOMIA-style self-training (``ConfidenceScoreAttack(training="self")``) is left out: on
    well-calibrated models the rows it learns from are confounded with the label and it falls
    far below the prior (benchmarks/bench_attribute_inference.py); pass it explicitly.
    """
    caps = target.capabilities
    attacks: list[AttributeAttack] = []
    scores = Capability.SCORES in caps
    if scores or with_auxiliary:
        attacks.append(FredriksonMAP())
    if with_auxiliary:
        attacks.append(FredriksonMAP(prior="imputation"))
    if scores:
        attacks.append(CSMIA())
        if with_auxiliary:
            attacks.append(ConfidenceScoreAttack())
    if is_whitebox_tree(target) and with_auxiliary:
        attacks.append(DecisionTreeWhiteBox())
    return attacks


@dataclass(frozen=True)
class AttackRow:
    """One line of the table: an attack (or baseline), its metrics and its comparisons."""

    label: str
    attack: str
    baseline: bool
    metrics: AttributeMetrics
    vs_prior: dict[str, float] | None
    vs_imputation: dict[str, float] | None
    mcnemar_prior: McNemarResult | None
    mcnemar_imputation: McNemarResult | None
    queries: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "attack": self.attack,
            "baseline": self.baseline,
            **self.metrics.to_dict(),
            "advantage_over_prior": self.vs_prior,
            "advantage_over_imputation": self.vs_imputation,
            "mcnemar_vs_prior": None
            if self.mcnemar_prior is None
            else self.mcnemar_prior.to_dict(),
            "mcnemar_vs_imputation": (
                None if self.mcnemar_imputation is None else self.mcnemar_imputation.to_dict()
            ),
            "queries": self.queries,
            "seconds": round(self.seconds, 4),
        }


@dataclass
class TabularAssessment:
    """All attacks on one set of rows."""

    model: str
    attribute: str
    values: tuple[str, ...]
    population: str
    rows: list[AttackRow]
    results: list[AttributeInferenceResult] = field(repr=False)
    truth_counts: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def best_attack(self) -> AttackRow | None:
        attacks = [r for r in self.rows if not r.baseline]
        return max(attacks, key=lambda r: r.metrics.accuracy) if attacks else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "attribute": self.attribute,
            "values": list(self.values),
            "population": self.population,
            "truth_counts": self.truth_counts,
            "rows": [r.to_dict() for r in self.rows],
            "results": [r.summary() for r in self.results],
            **({"meta": self.meta} if self.meta else {}),
        }


def run_assessment(
    target: Target,
    request: AttributeInferenceRequest,
    truth: NDArray[np.int64],
    *,
    attacks: Sequence[AttributeAttack] | None = None,
    rng: int = 0,
    model: str = "model",
    population: str = "members",
    meta: dict[str, Any] | None = None,
) -> TabularAssessment:
    """Run the baselines and ``attacks`` (default: :func:`default_attacks`) on ``request``.

    Each attack gets its own seed, ``rng + i`` (baselines first), recorded in its result.
    """
    t = np.asarray(truth, dtype=np.int64)
    if t.shape != (request.n,):
        raise InvalidParameterError(
            f"truth must hold one value index per attacked row ({request.n}), got {t.shape}"
        )
    with_aux = request.auxiliary is not None
    chosen = (
        list(attacks) if attacks is not None else default_attacks(target, with_auxiliary=with_aux)
    )
    baselines: list[AttributeAttack] = [PriorBaseline()]
    if with_aux:
        baselines.append(ImputationBaseline())
    k = request.attribute.k
    results: list[AttributeInferenceResult] = []
    for i, attack in enumerate([*baselines, *chosen]):
        results.append(attack.run(target, request, rng=rng + i))
    correct = [r.predictions == t for r in results]
    metrics = [attribute_metrics(t, r.predictions, k) for r in results]
    prior_m, prior_c = metrics[0], correct[0]
    imp_m = metrics[1] if with_aux else None
    imp_c = correct[1] if with_aux else None
    rows: list[AttackRow] = []
    for i, r in enumerate(results):
        is_base = i < len(baselines)
        rows.append(
            AttackRow(
                label=r.label,
                attack=r.attack,
                baseline=is_base,
                metrics=metrics[i],
                vs_prior=None if i == 0 else advantage(metrics[i], prior_m),
                vs_imputation=(None if imp_m is None or i == 1 else advantage(metrics[i], imp_m)),
                mcnemar_prior=None if i == 0 else mcnemar_test(correct[i], prior_c),
                mcnemar_imputation=(
                    None if imp_c is None or i == 1 else mcnemar_test(correct[i], imp_c)
                ),
                queries=r.queries,
                seconds=r.seconds,
            )
        )
    counts = np.bincount(t, minlength=k)
    return TabularAssessment(
        model=model,
        attribute=request.attribute.name,
        values=request.attribute.values,
        population=population,
        rows=rows,
        results=results,
        truth_counts=dict(zip(request.attribute.values, counts.tolist(), strict=True)),
        meta=dict(meta or {}),
    )


def _signed(v: float | None) -> str:
    """``+0.123``; a value that rounds to zero is ``0.000`` (never ``-0.000``)."""
    if v is None:
        return ""
    return "0.000" if abs(v) < 0.0005 else f"{v:+.3f}"


def _p(m: McNemarResult | None) -> str:
    if m is None:
        return ""
    return "<1e-4" if m.p_value < 1e-4 else f"{m.p_value:.3g}"


TABLE_COLUMNS = (
    "attack",
    "accuracy",
    "G-mean",
    "MCC",
    "vs prior (acc)",
    "p",
    "vs imputation (acc)",
    "p ",
    "queries",
    "seconds",
)


MARKDOWN_COLUMNS = (*TABLE_COLUMNS[:5], "p (vs prior)", TABLE_COLUMNS[6], "p (vs imputation)",
                    *TABLE_COLUMNS[8:])  # fmt: skip


def _plain(value: Any) -> str:
    """A metadata value as text: ``k v, k v`` for a mapping (never a Python dict repr)."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value)
    return str(value).replace("|", "\\|")


def table_rows(assessment: TabularAssessment) -> list[list[str]]:
    out = []
    for r in assessment.rows:
        out.append(
            [
                r.label,
                f"{r.metrics.accuracy:.3f}",
                f"{r.metrics.g_mean:.3f}",
                f"{r.metrics.mcc:.3f}",
                _signed(None if r.vs_prior is None else r.vs_prior["accuracy"]),
                _p(r.mcnemar_prior),
                _signed(None if r.vs_imputation is None else r.vs_imputation["accuracy"]),
                _p(r.mcnemar_imputation),
                str(r.queries),
                f"{r.seconds:.2f}",
            ]
        )
    return out


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table whose columns line up in plain text too."""
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(lines)


def format_assessment(assessment: TabularAssessment) -> str:
    """A heading line and the table of one assessment."""
    n = assessment.rows[0].metrics.n if assessment.rows else 0
    counts = ", ".join(f"{k} {v}" for k, v in assessment.truth_counts.items())
    head = (
        f"{assessment.model}: '{assessment.attribute}' of {n} {assessment.population} ({counts}); "
        "p: one-sided exact McNemar"
    )
    return head + "\n" + markdown_table(TABLE_COLUMNS, table_rows(assessment))


def write_report(
    assessments: Sequence[TabularAssessment],
    out_dir: str | os.PathLike[str],
    *,
    meta: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` to ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": REPORT_FORMAT,
        "version": 1,
        **({"meta": meta} if meta else {}),
        "assessments": [a.to_dict() for a in assessments],
    }
    json_path = out / "report.json"
    json_path.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    lines = ["# InvGuard: attribute inference assessment", ""]
    if meta:
        meta_rows = [[str(k), _plain(v)] for k, v in meta.items()]
        lines += [markdown_table(("run", "value"), meta_rows), ""]
    for a in assessments:
        n = a.rows[0].metrics.n if a.rows else 0
        counts = ", ".join(f"{k} {v}" for k, v in a.truth_counts.items())
        lines += [
            f"## {a.model}: {a.attribute} ({a.population})",
            "",
            f"'{a.attribute}' of {n} {a.population} ({counts}); p: one-sided exact McNemar.",
            "",
            markdown_table(MARKDOWN_COLUMNS, table_rows(a)),
            "",
        ]
        best = a.best_attack()
        if best is not None and best.vs_imputation is not None and best.mcnemar_imputation:
            verdict = (
                "leaks beyond what the population reveals"
                if best.mcnemar_imputation.p_value < 0.01
                else "no significant leak beyond imputation"
            )
            lines += [
                f"Best attack: {best.label}, accuracy {best.metrics.accuracy:.3f} "
                f"({_signed(best.vs_imputation['accuracy'])} over imputation, "
                f"p {_p(best.mcnemar_imputation)}): {verdict} (at p < 0.01).",
                "",
            ]
    md_path = out / "report.md"
    md_path.write_text("\n".join(lines), encoding="utf-8")
    return json_path, md_path
