"""Findings, severity rules and the risk score: pure functions of the measured numbers.

Severity of a measured leak depends on attack accuracy relative to chance, not on guesswork:

* ``chance = 1 / classes``; ``lift = (top1 - chance) / (1 - chance)``: the share of the identities
  above chance that the attack recovered (0 = chance, 1 = every identity).
* ``p`` = one-sided binomial test of the hits against chance (H0: the attack guesses).
* ``info`` when ``p >= 0.01`` (no measurable leak); otherwise ``low`` for lift < 0.25, ``medium``
  for lift >= 0.25, ``high`` for lift >= 0.5 and ``critical`` for lift >= 0.75.

Risk score of a system, in [0, 1]: ``min(1, L + 0.05 * m)`` where ``L`` is the largest lift of a
significant leak over all attacks run (the strongest attacker wins) and ``m`` the number of
recommended controls declared missing or measured missing by the endpoint probes (at most 3
count). Levels: critical >= 0.75, high >= 0.5,
medium >= 0.25, low > 0, none = 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from scipy.stats import binomtest

from invguard.catalog.rules import (
    ATLAS_M0001,
    ATLAS_T0024_001,
    CONTROL_RULES,
    JOB_FAILED_RULE,
    MITIGATIONS,
    OWASP_ML03,
    POSTURE_RULES,
    SEVERITY_RANK,
    Reference,
)
from invguard.metrics.intervals import wilson_interval

SIGNIFICANCE = 0.01
LIFT_THRESHOLDS = (("critical", 0.75), ("high", 0.5), ("medium", 0.25))
CONTROL_PENALTY = 0.05
MAX_CONTROL_PENALTIES = 3


@dataclass(frozen=True)
class Leakage:
    """Attack accuracy against chance for one attack on one system."""

    top1: float
    num_classes: int
    attacked: int
    chance: float
    lift: float
    p_value: float

    @property
    def hits(self) -> int:
        return round(self.top1 * self.attacked)

    @property
    def significant(self) -> bool:
        return self.p_value < SIGNIFICANCE


def measure_leakage(top1: float, num_classes: int, attacked: int) -> Leakage:
    """:class:`Leakage` of a top-1 attack accuracy over ``attacked`` identities of ``num_classes``."""
    chance = 1.0 / num_classes
    hits = round(top1 * attacked)
    p = float(binomtest(hits, attacked, chance, alternative="greater").pvalue) if attacked else 1.0
    lift = (top1 - chance) / (1.0 - chance)
    return Leakage(top1, num_classes, attacked, chance, lift, p)


def severity_of(leak: Leakage) -> str:
    if not leak.significant:
        return "info"
    for name, threshold in LIFT_THRESHOLDS:
        if leak.lift >= threshold:
            return name
    return "low"


def risk_score(leaks: Sequence[Leakage], missing_controls: int) -> float:
    measured = max((min(1.0, max(0.0, lk.lift)) for lk in leaks if lk.significant), default=0.0)
    penalty = CONTROL_PENALTY * min(missing_controls, MAX_CONTROL_PENALTIES)
    return round(min(1.0, measured + penalty), 4)


def risk_level(score: float) -> str:
    for name, threshold in LIFT_THRESHOLDS:
        if score >= threshold:
            return name
    return "low" if score > 0 else "none"


@dataclass
class Finding:
    """One finding: what was found, how bad, the evidence, what to do, and references."""

    id: str
    rule_id: str
    system: str
    title: str
    severity: str
    kind: str  # "measured", "declared" or "error"
    summary: str
    recommendation: str
    evidence: dict[str, Any] = field(default_factory=dict)
    references: list[Reference] = field(default_factory=list)
    passed: bool = False  # a declared control that is present: reported, not a problem

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["references"] = [asdict(r) for r in self.references]
        return d


def verdict_of(outcome: dict[str, Any]) -> float:
    """The verdict top-1 of one job (judges agreeing); older records: the evaluation model's."""
    m = outcome["metrics"]
    return float(m.get("verdict_top1", m["top1_accuracy"]))


def _faces(d: dict[str, Any]) -> dict[str, float]:
    """The face detector's rate of an image set, when the judgement has one (face data)."""
    return {"faces_detected": round(d["faces_detected"], 6)} if "faces_detected" in d else {}


def judges_evidence(outcomes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-judge top-1, reliability and calibration rows of the first seed's job, for evidence."""
    j = outcomes[0]["metrics"].get("judgement")
    if not j:
        return {}
    return {
        "verdict_rule": j["rule"],
        "judges": {
            n: {"top1": round(v["top1"], 6), "top5": round(v["top5"], 6), "status": v["status"]}
            for n, v in j["judges"].items()
        },
        "calibration": {
            row: {
                "verdict_top1": round(c["verdict_top1"], 6),
                **{n: round(v["top1"], 6) for n, v in c["judges"].items()},
                **_faces(c),
            }
            for row, c in j["calibration"].items()
        },
        **_faces(j),
        "evaluation_model_top1": round(
            sum(float(o["metrics"]["top1_accuracy"]) for o in outcomes) / len(outcomes), 6
        ),
        "verdict_degraded": bool(j["degraded"]),
    }


def measured_finding(
    *,
    system: str,
    rule_id: str,
    title: str,
    attack: str,
    access: str,
    outcomes: Sequence[dict[str, Any]],
    num_classes: int,
) -> tuple[Finding, Leakage]:
    """The finding for one attack on one system, from the metrics of its seeds' jobs."""
    n = len(outcomes)
    top1 = sum(verdict_of(o) for o in outcomes) / n
    attacked = len(outcomes[0]["per_class"])
    leak = measure_leakage(top1, num_classes, attacked)
    sev = severity_of(leak)
    mean = {
        k: sum(float(o["metrics"][k]) for o in outcomes) / n
        for k in ("top5_accuracy", "knn_distance", "ssim", "psnr", "target_confidence")
    }
    queries = sum(int(o["attack_summary"]["queries"]) for o in outcomes)
    seconds = sum(float(o["attack_summary"]["seconds"]) for o in outcomes)
    lo, hi = wilson_interval(leak.hits, attacked) if attacked else (0.0, 1.0)
    if leak.significant:
        summary = (
            f"{attack} ({access}) reconstructed {leak.hits} of {attacked} identities recognisably "
            f"by the judges' verdict (top-1 {top1:.3f}, 95% CI {lo:.2f}-{hi:.2f}, vs chance "
            f"{leak.chance:.3f}; {leak.lift:.0%} of the way from chance "
            f"to every identity; p = {leak.p_value:.1e})."
        )
    else:
        summary = (
            f"{attack} ({access}) did not beat chance measurably (top-1 {top1:.3f} vs chance "
            f"{leak.chance:.3f}, p = {leak.p_value:.2f})."
        )
    if access == "white-box":
        rec = (
            "Anyone with the weights can reconstruct these people. Treat the weights as personal "
            "data: do not publish or ship them (AML.M0001), restrict access, and retrain with a "
            "training-time defence (DP-SGD at a small epsilon, or negative label smoothing), then "
            "re-run this assessment to confirm the drop and its accuracy cost."
        )
        refs = [OWASP_ML03, ATLAS_T0024_001, ATLAS_M0001]
    else:
        rec = (
            "Return less from the prediction API (labels, or rounded top-1 scores: AML.M0002), "
            "limit queries per client (AML.M0004), and monitor for inversion query streams "
            "(AML.M0024), then re-run this assessment."
        )
        refs = [OWASP_ML03, ATLAS_T0024_001, *MITIGATIONS]
    if not leak.significant:
        rec = "No action needed for this attack; keep assessing when the model or data change."
    finding = Finding(
        id=f"{rule_id}/{system}/{attack}",
        rule_id=rule_id,
        system=system,
        title=title,
        severity=sev,
        kind="measured",
        summary=summary,
        recommendation=rec,
        evidence={
            "attack": attack,
            "access": access,
            "seeds": [o["seed"] for o in outcomes],
            "top1_accuracy": round(top1, 6),
            "top1_per_seed": [verdict_of(o) for o in outcomes],
            "top1_interval_95": [round(lo, 6), round(hi, 6)],
            "chance": round(leak.chance, 6),
            "lift": round(leak.lift, 6),
            "p_value": leak.p_value,
            "identities_attacked": attacked,
            "identities_recovered": leak.hits,
            **{k: round(v, 6) for k, v in mean.items()},
            "queries": queries,
            "seconds": round(seconds, 3),
            "jobs": [o["key"] for o in outcomes],
            **judges_evidence(outcomes),
        },
        references=refs,
    )
    return finding, leak


def tabular_finding(
    *,
    system: str,
    rule_id: str,
    title: str,
    attack: str,
    access: str,
    outcomes: Sequence[dict[str, Any]],
) -> tuple[Finding, Leakage]:
    """The finding of an attribute-inference job, from each seed's headline numbers.

    The baseline is the imputation attack (a model trained on the attacker's auxiliary rows that
    never queries the target): ``lift`` is the share of its errors the strongest attack gets right,
    and ``p`` the exact one-sided McNemar test against it (the largest over seeds).
    """
    heads = [o["headline"] for o in outcomes]
    n = len(heads)
    acc = sum(float(h["accuracy"]) for h in heads) / n
    base = sum(float(h["baseline_accuracy"]) for h in heads) / n
    lift = sum(float(h["lift"]) for h in heads) / n
    p = max(float(h["p_value"]) for h in heads)
    rows = int(heads[0]["rows"])
    leak = Leakage(
        top1=acc,
        num_classes=int(heads[0]["values"]),
        attacked=rows,
        chance=base,
        lift=lift,
        p_value=p,
    )
    h = heads[0]
    if leak.significant:
        summary = (
            f"{h['best_attack']} ({access}) inferred '{h['attribute']}' of {rows} training records "
            f"with accuracy {acc:.3f} against {base:.3f} for the {h['baseline']} baseline, which "
            f"never queries the model ({lift:.0%} of its errors recovered; McNemar p = {p:.1e})."
        )
        rec = (
            "The model reveals the sensitive attribute beyond what the other columns do. Return "
            "labels or rounded top-1 scores (AML.M0002), limit queries per client (AML.M0004), "
            "consider dropping or coarsening the attribute's correlates in training, and re-run "
            "this assessment."
        )
    else:
        summary = (
            f"No attack inferred '{h['attribute']}' measurably better than the {h['baseline']} "
            f"baseline (best {h['best_attack']}: accuracy {acc:.3f} against {base:.3f}; McNemar "
            f"p = {p:.2f}): the model adds nothing measurable to what the other columns reveal."
        )
        rec = "No action needed for this attack; keep assessing when the model or data change."
    evidence: dict[str, Any] = {
        "attack": attack,
        "access": access,
        "attribute": h["attribute"],
        "best_attack": h["best_attack"],
        "accuracy": round(acc, 6),
        "baseline": h["baseline"],
        "baseline_accuracy": round(base, 6),
        "prior_accuracy": round(float(h["prior_accuracy"]), 6),
        "lift": round(lift, 6),
        "p_value": p,
        "records_attacked": rows,
        "seeds": n,
    }
    if h.get("non_member_accuracy") is not None:
        evidence["non_member_accuracy"] = round(float(h["non_member_accuracy"]), 6)
    finding = Finding(
        id=f"{rule_id}/{system}/{attack}",
        rule_id=rule_id,
        system=system,
        title=title,
        severity=severity_of(leak),
        kind="measured",
        summary=summary,
        recommendation=rec,
        evidence=evidence,
        references=[OWASP_ML03, ATLAS_T0024_001, *MITIGATIONS],
    )
    return finding, leak


def control_findings(
    system: str, controls: Sequence[dict[str, Any]], measured_severity: str
) -> tuple[list[Finding], int]:
    """Checklist findings for declared controls, and how many recommended controls are missing.

    A missing control is ``medium`` when a measured leak on the system is medium or worse,
    ``low`` otherwise; a present control is reported as passed (``info``).
    """
    declared = {c["id"]: c for c in controls}
    findings: list[Finding] = []
    missing = 0
    for cid, (rule, ref, advice) in CONTROL_RULES.items():
        c = declared.get(cid)
        if c is None or c["status"] == "not_applicable":
            continue
        refs = [OWASP_ML03] + ([ref] if ref else [])
        evidence = {"control": cid, "status": c["status"], "declared_by": c["declared_by"]}
        if c.get("note"):
            evidence["note"] = c["note"]
        if c["status"] == "missing":
            missing += 1
            sev = "medium" if SEVERITY_RANK[measured_severity] >= SEVERITY_RANK["medium"] else "low"
            findings.append(
                Finding(
                    id=f"{rule.id}/{system}",
                    rule_id=rule.id,
                    system=system,
                    title=rule.title,
                    severity=sev,
                    kind="declared",
                    summary=f"{rule.help} Declared by {c['declared_by']}; not measured.",
                    recommendation=advice,
                    evidence=evidence,
                    references=refs,
                )
            )
        else:
            findings.append(
                Finding(
                    id=f"{rule.id}/{system}",
                    rule_id=rule.id,
                    system=system,
                    title=rule.title.replace("not in place", "in place"),
                    severity="info",
                    kind="declared",
                    summary=f"Declared present by {c['declared_by']}; not measured.",
                    recommendation="Keep it; verify it with a measurement where InvGuard can.",
                    evidence=evidence,
                    references=refs,
                    passed=True,
                )
            )
    return findings, missing


def failed_job_finding(system: str, attack: str, seed: int, error: str, key: str) -> Finding:
    return Finding(
        id=f"{JOB_FAILED_RULE.id}/{system}/{attack}/{seed}",
        rule_id=JOB_FAILED_RULE.id,
        system=system,
        title=JOB_FAILED_RULE.title,
        severity="info",
        kind="error",
        summary=f"{attack} (seed {seed}) failed: {error}",
        recommendation="Fix the cause and run the assessment again; finished jobs are reused.",
        evidence={"attack": attack, "seed": seed, "error": error, "job": key},
        references=[],
    )


def posture_findings(
    system: str, observations: Sequence[dict[str, Any]]
) -> tuple[list[Finding], set[str]]:
    """Findings for endpoint posture observations, and the controls they measured as missing.

    A failed check is a measured finding at the rule's severity (``low`` for plain http on a
    loopback address); a passed check is reported as passed; an inconclusive one is ``info``.
    """
    findings: list[Finding] = []
    missing: set[str] = set()
    for obs in observations:
        entry = POSTURE_RULES.get(obs["check"])
        if entry is None:
            continue
        rule, severity, refs, control = entry
        evidence = dict(obs.get("evidence", {}))
        conclusive = evidence.get("conclusive", True)
        passed = bool(obs["passed"]) and conclusive
        if not conclusive:
            severity = "info"
        elif obs["check"] == "transport_security" and evidence.get("host_is_loopback"):
            severity = "low"
        if not passed and conclusive and control is not None:
            missing.add(control)
        findings.append(
            Finding(
                id=f"{rule.id}/{system}",
                rule_id=rule.id,
                system=system,
                title=rule.title if not passed else f"Endpoint check passed: {obs['check']}",
                severity="info" if passed else severity,
                kind="measured",
                summary=str(obs.get("summary", "")),
                recommendation=str(obs.get("recommendation", "")) or rule.help,
                evidence=evidence,
                references=list(refs),
                passed=passed,
            )
        )
    return findings, missing
