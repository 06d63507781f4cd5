from __future__ import annotations

import pytest

from invguard.assess.findings import (
    control_findings,
    measure_leakage,
    measured_finding,
    risk_level,
    risk_score,
    severity_of,
)
from invguard.catalog.rules import at_or_above


def test_leakage_is_relative_to_chance() -> None:
    leak = measure_leakage(0.875, 40, 40)
    assert leak.chance == pytest.approx(0.025)
    assert leak.lift == pytest.approx((0.875 - 0.025) / 0.975)
    assert leak.hits == 35
    assert leak.significant
    assert severity_of(leak) == "critical"
    # the same accuracy is unremarkable with 2 classes
    assert severity_of(measure_leakage(0.5, 2, 40)) == "info"


@pytest.mark.parametrize(
    ("top1", "classes", "attacked", "severity"),
    [
        (0.625, 40, 40, "high"),  # lift 0.615
        (0.30, 40, 40, "medium"),  # lift 0.28
        (0.20, 40, 40, "low"),  # lift 0.18, p << 0.01
        (0.05, 40, 40, "info"),  # 2 hits: not significant
        (0.80, 10, 10, "critical"),  # lift 0.78, p = 1e-6
        (0.30, 10, 10, "info"),  # 3 of 10 vs chance 0.1: p = 0.07
    ],
)
def test_severity_rules(top1: float, classes: int, attacked: int, severity: str) -> None:
    assert severity_of(measure_leakage(top1, classes, attacked)) == severity


def test_risk_score_formula_and_levels() -> None:
    strong = measure_leakage(0.875, 40, 40)
    weak = measure_leakage(0.3, 40, 40)
    noise = measure_leakage(0.05, 40, 40)
    assert risk_score([weak, strong], 0) == pytest.approx(round(strong.lift, 4))
    assert risk_score([noise], 0) == 0.0
    assert risk_score([noise], 2) == pytest.approx(0.1)
    assert risk_score([noise], 7) == pytest.approx(0.15)
    assert risk_score([strong], 3) == 1.0
    assert [risk_level(s) for s in (0.0, 0.1, 0.3, 0.6, 0.9)] == [
        "none",
        "low",
        "medium",
        "high",
        "critical",
    ]


def test_gate_thresholds() -> None:
    assert at_or_above("critical", "high")
    assert at_or_above("high", "high")
    assert not at_or_above("medium", "high")
    assert not at_or_above("critical", "none")
    assert at_or_above("info", "info")


def test_measured_finding_and_controls() -> None:
    outcomes = [
        {
            "key": f"k{s}",
            "seed": s,
            "metrics": {
                "top1_accuracy": t,
                "top5_accuracy": 1.0,
                "knn_distance": 50.0,
                "ssim": 0.5,
                "psnr": 18.0,
                "target_confidence": 0.98,
            },
            "per_class": [{}] * 40,
            "attack_summary": {"queries": 1000, "seconds": 1.5},
        }
        for s, t in ((0, 0.85), (1, 0.9))
    ]
    finding, _ = measured_finding(
        system="faces",
        rule_id="IG-MI-001",
        title="t",
        attack="miface",
        access="white-box",
        outcomes=outcomes,
        num_classes=40,
    )
    assert finding.severity == "critical"
    assert finding.evidence["top1_accuracy"] == pytest.approx(0.875)
    assert finding.evidence["top1_per_seed"] == [0.85, 0.9]
    lo, hi = finding.evidence["top1_interval_95"]  # Wilson, 35 of 40 identities
    assert (round(lo, 3), round(hi, 3)) == (0.739, 0.945)
    assert f"95% CI {lo:.2f}-{hi:.2f}" in finding.summary
    assert finding.evidence["queries"] == 2000
    assert {r.id for r in finding.references} >= {"OWASP ML03:2023", "AML.T0024.001"}
    ctl, missing = control_findings(
        "faces",
        [
            {"id": "dp_training", "status": "missing", "declared_by": "a", "note": ""},
            {"id": "query_limits", "status": "present", "declared_by": "b", "note": ""},
            {"id": "inference_monitoring", "status": "not_applicable", "declared_by": "c"},
        ],
        finding.severity,
    )
    assert missing == 1
    by_rule = {f.rule_id: f for f in ctl}
    assert by_rule["IG-CTL-004"].severity == "medium"
    assert by_rule["IG-CTL-004"].kind == "declared"
    assert by_rule["IG-CTL-002"].passed
    assert "IG-CTL-003" not in by_rule
    assert {r.id for r in by_rule["IG-CTL-002"].references} == {"OWASP ML03:2023", "AML.M0004"}
