"""The rule catalogue: every finding's rule id, title and help text, its references (OWASP ML Top
10, MITRE ATLAS) and the severity scale. Reports, SARIF and the findings all read it from here."""

from __future__ import annotations

from dataclasses import dataclass

SEVERITY_RANK = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


@dataclass(frozen=True)
class Reference:
    id: str
    name: str
    url: str


OWASP_ML03 = Reference(
    "OWASP ML03:2023",
    "Model Inversion Attack",
    "https://owasp.org/www-project-machine-learning-security-top-10/docs/ML03_2023-Model_Inversion_Attack",
)
ATLAS_T0024_001 = Reference(
    "AML.T0024.001", "Invert AI Model", "https://atlas.mitre.org/techniques/AML.T0024.001"
)
ATLAS_M0001 = Reference(
    "AML.M0001", "Limit Model Artifact Release", "https://atlas.mitre.org/mitigations/AML.M0001"
)
ATLAS_M0002 = Reference(
    "AML.M0002", "Passive AI Output Obfuscation", "https://atlas.mitre.org/mitigations/AML.M0002"
)
ATLAS_M0004 = Reference(
    "AML.M0004",
    "Restrict Number of AI Model Queries",
    "https://atlas.mitre.org/mitigations/AML.M0004",
)
ATLAS_M0024 = Reference(
    "AML.M0024", "AI Telemetry Logging", "https://atlas.mitre.org/mitigations/AML.M0024"
)
MITIGATIONS = (ATLAS_M0002, ATLAS_M0004, ATLAS_M0024)


def at_or_above(severity: str, threshold: str) -> bool:
    """Does a finding of ``severity`` trip a gate at ``threshold`` ('none' never trips)?"""
    if threshold == "none":
        return False
    return SEVERITY_RANK[severity] >= SEVERITY_RANK[threshold]


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    help: str


CONTROL_RULES: dict[str, tuple[Rule, Reference | None, str]] = {
    "output_minimisation": (
        Rule(
            "IG-CTL-001",
            "Output minimisation not in place (declared)",
            "The prediction API returns more than the application needs (full confidence scores).",
        ),
        ATLAS_M0002,
        "Return only the label, or the top-1 score rounded to 1-2 decimals; measure the effect with "
        "the black-box attacks.",
    ),
    "query_limits": (
        Rule(
            "IG-CTL-002",
            "Per-client query limits not in place (declared)",
            "Inversion needs thousands of queries; without quotas an attacker gets them for free.",
        ),
        ATLAS_M0004,
        "Rate-limit and cap queries per API key (the InvGuard gateway does this).",
    ),
    "inference_monitoring": (
        Rule(
            "IG-CTL-003",
            "Inference monitoring not in place (declared)",
            "Nobody would notice an inversion query stream.",
        ),
        ATLAS_M0024,
        "Log inference queries and detect inversion streams (the InvGuard gateway's detectors).",
    ),
    "dp_training": (
        Rule(
            "IG-CTL-004",
            "Privacy-preserving training not in place (declared)",
            "The model was trained without a guarantee such as differential privacy.",
        ),
        None,
        "Train with DP-SGD (e.g. Opacus) at a small epsilon, or negative label smoothing, and "
        "measure the accuracy cost.",
    ),
}
JOB_FAILED_RULE = Rule(
    "IG-JOB-001",
    "Attack could not run: the assessment is incomplete",
    "A job failed, so its leakage was not measured.",
)


POSTURE_RULES: dict[str, tuple[Rule, str, list[Reference], str | None]] = {
    # check -> (rule, severity when it fails, references, control it measures)
    "authentication": (
        Rule(
            "IG-POS-001",
            "Prediction endpoint answers without credentials (measured)",
            "Anyone who can reach the endpoint can run inversion queries.",
        ),
        "high",
        [OWASP_ML03, ATLAS_M0004],
        None,
    ),
    "output_detail": (
        Rule(
            "IG-POS-002",
            "Prediction endpoint returns full probability vectors (measured)",
            "Full confidence vectors are what score-based inversion feeds on.",
        ),
        "medium",
        [OWASP_ML03, ATLAS_M0002],
        "output_minimisation",
    ),
    "output_precision": (
        Rule(
            "IG-POS-003",
            "Prediction endpoint returns scores at full precision (measured)",
            "Unrounded scores give gradient estimates more signal.",
        ),
        "low",
        [OWASP_ML03, ATLAS_M0002],
        None,
    ),
    "rate_limiting": (
        Rule(
            "IG-POS-004",
            "Prediction endpoint has no rate limit (measured)",
            "A burst of requests was answered without a single 429.",
        ),
        "medium",
        [OWASP_ML03, ATLAS_M0004],
        "query_limits",
    ),
    "transport_security": (
        Rule(
            "IG-POS-005",
            "Prediction endpoint is served without TLS (measured)",
            "Queries, scores and credentials travel in clear text.",
        ),
        "medium",
        [OWASP_ML03],
        None,
    ),
}


__all__ = [
    "ATLAS_M0001",
    "ATLAS_M0002",
    "ATLAS_M0004",
    "ATLAS_M0024",
    "ATLAS_T0024_001",
    "CONTROL_RULES",
    "JOB_FAILED_RULE",
    "MITIGATIONS",
    "OWASP_ML03",
    "POSTURE_RULES",
    "SEVERITY_RANK",
    "Reference",
    "Rule",
    "at_or_above",
]
