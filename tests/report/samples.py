"""Report inputs without training anything: an assessment record with the numbers of a real run
(faces softmax, MI-FACE, three judges; a census tree; a defence evaluation), and gallery images
drawn from a seeded generator. Used by the report tests and benchmarks/screenshot_reports.py."""

from __future__ import annotations

from typing import Any

import numpy as np

from invguard.assess.findings import Finding
from invguard.assess.records import Assessment, Gallery, SystemResult
from invguard.catalog.rules import Reference
from invguard.defenses.evaluation import AttackScore, DefenseEvaluation, DefenseRow, compare

OWASP = Reference("OWASP ML03:2023", "Model Inversion Attack", "https://owasp.org/ml03")
JUDGES = {
    "evaluation-model": {"top1": 0.6, "top5": 1.0, "status": "reliable"},
    "face-embedding": {"top1": 0.35, "top5": 0.725, "status": "reliable"},
    "pixel-ssim": {"top1": 1.0, "top5": 1.0, "status": "unreliable"},
}
# stored evidence has its keys sorted (JSON in the history file): the report restores the order
CALIBRATION = {
    "artefacts": {"verdict_top1": 0.0, "evaluation-model": 0.025, "face-embedding": 0.025,
                  "pixel-ssim": 0.0},
    "class_mean": {"verdict_top1": 1.0, "evaluation-model": 1.0, "face-embedding": 0.625,
                   "pixel-ssim": 1.0},
    "grey": {"verdict_top1": 0.0, "evaluation-model": 0.025, "face-embedding": 0.025,
             "pixel-ssim": 0.025},
    "held_out": {"verdict_top1": 0.975, "evaluation-model": 1.0, "face-embedding": 0.975,
                 "pixel-ssim": 0.825},
    "noise": {"verdict_top1": 0.0, "evaluation-model": 0.025, "face-embedding": 0.025,
              "pixel-ssim": 0.0},
}  # fmt: skip


def image_finding(system: str = "faces") -> Finding:
    return Finding(
        id=f"IG-MI-001/{system}/miface",
        rule_id="IG-MI-001",
        system=system,
        title="Training identities reconstructed by white-box model inversion (MI-FACE)",
        severity="high",
        kind="measured",
        summary="miface (white-box) reconstructed 29 of 40 identities.",
        recommendation="Retrain with a training-time defence.",
        evidence={
            "attack": "miface",
            "access": "white-box",
            "seeds": [0],
            "top1_accuracy": 0.725,
            "chance": 0.025,
            "lift": 0.717949,
            "p_value": 6.1e-38,
            "identities_attacked": 40,
            "jobs": ["174a14cca13e50e25e3336d142a99d04e1f0fc981c41a93df7fdacfc69db11c9"],
            "verdict_rule": "an identity counts when 2 reliable judges name it first",
            "judges": JUDGES,
            "calibration": CALIBRATION,
            "verdict_degraded": False,
        },
        references=[OWASP],
    )


def tabular_finding(system: str = "census") -> Finding:
    return Finding(
        id=f"IG-AI-001/{system}/attribute",
        rule_id="IG-AI-001",
        system=system,
        title="A sensitive attribute of training records inferred from the model",
        severity="medium",
        kind="measured",
        summary="fredrikson-map inferred 'marital-status'.",
        recommendation="Return labels.",
        evidence={
            "attack": "attribute",
            "attribute": "marital-status",
            "best_attack": "fredrikson-map (imputation prior)",
            "accuracy": 0.9,
            "baseline": "imputation",
            "baseline_accuracy": 0.8275,
            "prior_accuracy": 0.4525,
            "non_member_accuracy": 0.83,
            "lift": 0.42,
            "p_value": 1e-5,
            "records_attacked": 400,
        },
        references=[OWASP],
    )


def _row(name: str, kind: str, acc: float, **top1: float) -> DefenseRow:
    scores = {a: AttackScore(a, v, v, 40.0 + 60 * v, 100, 1.0) for a, v in top1.items()}
    return DefenseRow(name, kind, name, {}, name, acc, scores)


def defence_evaluation(budget: float = 0.03) -> DefenseEvaluation:
    """README numbers: within 3 points ``bido`` wins the white-box comparison; with ``budget``
    0 no training defence qualifies and the white-box comparison keeps the undefended model."""
    rows = [
        _row("none", "none", 0.944, miface=0.9, zo=0.333, brep=0.267),
        _row("label-smoothing", "training", 0.911, miface=0.333),
        _row("dp-sgd", "training", 0.422, miface=0.033),
        _row("bido", "training", 0.978 if budget else 0.90, miface=0.067),
        _row("round", "output", 0.944, zo=0.033, brep=0.267),
        _row("top_k", "output", 0.944, zo=0.033, brep=0.267),
    ]
    threats = {
        k: t
        for k, t in (
            ("white-box", compare("white-box", rows, ["miface"], budget)),
            ("black-box", compare("black-box", rows, ["zo", "brep"], budget)),
        )
        if t is not None
    }
    return DefenseEvaluation("faces", "mlp", 30, budget, rows, threats, 1.0)


def _system(sid: str, risk: float, findings: list[Finding], **extra: Any) -> SystemResult:
    return SystemResult(
        id=sid,
        name=f"System {sid}",
        owner="ml@example.com",
        target={"name": "reference", "source": "fixture", "test_accuracy": 0.944, "access": "white-box"},
        data={"name": "faces", "description": "fixture", "private_images": 280, "classes": 40},
        risk_score=risk,
        risk_level="high" if risk >= 0.5 else "medium",
        previous_risk=None,
        previous_run=None,
        findings=findings,
        controls=[],
        posture=[],
        skipped=[],
        jobs=[{"key": "ab" * 32, "attack": "miface", "seed": 0, "status": "ok", "error": None,
               "reused": False, "seconds": 0.4, "queries": 100}],
        complete=True,
        **extra,
    )  # fmt: skip


def gallery(n: int, seed: int = 0) -> Gallery:
    rng = np.random.default_rng(seed)
    return Gallery(
        reconstructions=rng.random((n, 1, 28, 23), dtype=np.float32),
        nearest=rng.random((n, 1, 28, 23), dtype=np.float32),
        names=[f"s{i + 1}" for i in range(n)],
        hits=[bool(i % 2) for i in range(n)],
    )


def assessment(
    run_id: int = 1, risk: float = 0.72, *, identities: int = 6, budget: float = 0.03
) -> Assessment:
    """Three systems: faces (judges, a gallery), census (tabular), defended (a defence table)."""
    img = image_finding()
    systems = [
        _system("faces", risk, [img]),
        _system("census", 0.42, [tabular_finding()]),
        _system("defended", 0.3, [image_finding("defended")],
                defenses=defence_evaluation(budget).to_dict()),
    ]  # fmt: skip
    return Assessment(
        name="report <fixture>",
        run_id=run_id,
        config_path="/tmp/invguard.yaml",
        config_digest="0" * 64,
        started="2026-01-01T00:00:00+00:00",
        finished=f"2026-01-0{min(run_id, 9)}T00:00:00+00:00",
        executor="in-process",
        fail_on="high",
        systems=systems,
        jobs_total=3,
        jobs_reused=0,
        jobs_failed=0,
        seconds=1.0,
        galleries={img.id: gallery(identities)},
    )
