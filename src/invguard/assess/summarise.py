"""Stage 4 of an assessment: the stored job outcomes of one system become findings and a risk score.

Measured findings come from the judged attack results (one per attack, over its seeds), failed jobs
become findings of their own, and posture and declared controls add theirs; the risk score weighs
the significant leaks and the missing controls (:mod:`invguard.assess.findings`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from invguard.assess.config import AttackConfig
from invguard.assess.findings import (
    Finding,
    Leakage,
    control_findings,
    failed_job_finding,
    measured_finding,
    posture_findings,
    risk_level,
    risk_score,
)
from invguard.assess.history import HistoryStore
from invguard.assess.jobs import JobOutcome
from invguard.assess.plan import PlannedJob, Prepared, PreparedSystem, UnavailableSystem
from invguard.assess.records import Gallery, SystemResult
from invguard.assess.run import JobRun
from invguard.assess.tabular import tabular_attack_finding
from invguard.catalog.attacks import ATTACK_REGISTRY
from invguard.catalog.rules import SEVERITY_RANK
from invguard.defenses.evaluation import DefenseEvaluation


@dataclass
class _Measured:
    """What the attacks of one system produced: findings, leaks, job rows and galleries."""

    findings: list[Finding] = field(default_factory=list)
    leaks: list[Leakage] = field(default_factory=list)
    job_rows: list[dict[str, Any]] = field(default_factory=list)
    galleries: dict[str, Gallery] = field(default_factory=dict)
    failed: int = 0


def _job_row(p: PlannedJob, o: JobOutcome, ran: frozenset[str]) -> dict[str, Any]:
    s = p.spec
    return {
        "key": s.key,
        "attack": s.attack,
        "seed": s.seed,
        "status": o.status,
        "error": o.error,
        "reused": s.key not in ran,
        "seconds": round(o.seconds, 3),
        "queries": o.attack_summary.get("queries"),
    }


def _gallery(first: JobOutcome, prep: PreparedSystem) -> Gallery | None:
    if first.reconstructions is None:
        return None
    nearest = np.asarray([r["nearest_private"] for r in first.per_class])
    return Gallery(
        first.reconstructions,
        prep.dataset.x_train[nearest],
        [str(r["name"]) for r in first.per_class],
        [bool(r.get("verdict_top1", r["top1"])) for r in first.per_class],
    )


def _attack_finding(
    prep: PreparedSystem,
    atk: AttackConfig,
    ok: list[JobOutcome],
    evaluation: DefenseEvaluation | None,
) -> tuple[Finding, Leakage]:
    """The measured finding of one attack over its successful seeds."""
    info = ATTACK_REGISTRY[atk.name]
    finding, leak = measured_finding(
        system=prep.id,
        rule_id=info.rule_id,
        title=info.title,
        attack=atk.name,
        access=info.access,
        outcomes=[o.record() for o in ok],
        num_classes=prep.dataset.num_classes,
    )
    if info.needs_prior:  # the generator whose latent space was searched
        used = (ok[0].attack_summary.get("extra") or {}).get("prior") or {}
        finding.evidence["prior"] = used.get("name")
        if used.get("source"):
            finding.evidence["prior_source"] = used["source"]
    threat = evaluation.threat_for(info.access) if evaluation is not None else None
    if threat is not None and leak.significant:
        finding.recommendation = f"{threat.recommendation} {finding.recommendation}"
        finding.evidence["defense_evaluation"] = threat.to_dict()
    return finding, leak


def _not_run(prep: UnavailableSystem) -> _Measured:
    """Every configured attack and seed of a system that could not be reached: not run, why."""
    out = _Measured()
    for atk in prep.system.attacks:
        for seed in atk.seeds:
            out.failed += 1
            out.job_rows.append(
                {
                    "key": "",
                    "attack": atk.name,
                    "seed": seed,
                    "status": "not-run",
                    "error": prep.reason,
                    "reused": False,
                    "seconds": 0.0,
                    "queries": None,
                }
            )
            out.findings.append(failed_job_finding(prep.id, atk.name, seed, prep.reason, ""))
    return out


def _measure(
    prep: Prepared,
    planned: list[PlannedJob],
    jobs: JobRun,
    evaluation: DefenseEvaluation | None,
) -> _Measured:
    if isinstance(prep, UnavailableSystem):
        return _not_run(prep)
    out = _Measured()
    for j, atk in enumerate(prep.system.attacks):
        mine = [p for p in planned if p.spec.system_id == prep.id and p.attack_index == j]
        for p in mine:
            o = jobs.outcomes[p.spec.key]
            out.job_rows.append(_job_row(p, o, jobs.ran))
            if o.status != "ok":
                out.failed += 1
                out.findings.append(
                    failed_job_finding(
                        prep.id, p.spec.attack, p.spec.seed, o.error or "", p.spec.key
                    )
                )
        ok = [jobs.outcomes[p.spec.key] for p in mine if jobs.outcomes[p.spec.key].status == "ok"]
        if not ok:
            continue
        if not isinstance(prep, PreparedSystem):
            finding, leak = tabular_attack_finding(prep.id, atk.name, ok)
        else:
            finding, leak = _attack_finding(prep, atk, ok, evaluation)
            gallery = _gallery(ok[0], prep)
            if gallery is not None:
                out.galleries[finding.id] = gallery
        out.findings.append(finding)
        out.leaks.append(leak)
    return out


def summarise_system(
    prep: Prepared,
    planned: list[PlannedJob],
    jobs: JobRun,
    evaluation: DefenseEvaluation | None,
    store: HistoryStore,
    run_id: int,
) -> tuple[SystemResult, dict[str, Gallery], int]:
    """(the system's result, its galleries by finding id, its failed job count)."""
    m = _measure(prep, planned, jobs, evaluation)
    findings = m.findings
    measured_sev = max(
        (f.severity for f in findings if f.kind == "measured"),
        key=lambda s: SEVERITY_RANK[s],
        default="info",
    )
    controls = [c.model_dump(mode="json") for c in prep.system.controls]
    pos_findings, measured_missing = posture_findings(prep.id, prep.posture)
    findings.extend(pos_findings)
    findings.extend(control_findings(prep.id, controls, measured_sev)[0])
    declared_missing = {c["id"] for c in controls if c["status"] == "missing"}
    findings.sort(key=lambda f: (-SEVERITY_RANK[f.severity], f.passed, f.id))
    score = risk_score(m.leaks, len(declared_missing | measured_missing))
    prev = store.previous_risk(prep.id, run_id)
    result = SystemResult(
        id=prep.id,
        name=prep.system.name or prep.id,
        owner=prep.system.owner,
        target=prep.target_info,
        data=prep.data_info(),
        risk_score=score,
        risk_level=risk_level(score),
        previous_risk=None if prev is None else prev[1],
        previous_run=None if prev is None else prev[0],
        findings=findings,
        controls=controls,
        posture=prep.posture,
        skipped=prep.skipped,
        jobs=m.job_rows,
        complete=m.failed == 0,
        defenses=evaluation.to_dict() if evaluation is not None else None,
        unavailable=prep.reason if isinstance(prep, UnavailableSystem) else None,
    )
    return result, m.galleries, m.failed


__all__ = ["summarise_system"]
