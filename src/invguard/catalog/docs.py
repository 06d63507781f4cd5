"""Every rule of the catalogue in one shape (id, name, title, description, help, tags), for the
SARIF rules, the reports and the docs: attack rules, the tabular rule, declared controls, measured
endpoint posture and the incomplete-assessment rule."""

from __future__ import annotations

import re
from dataclasses import dataclass

from invguard.catalog.attacks import ATTACK_REGISTRY, TABULAR_ATTACKS
from invguard.catalog.rules import (
    ATLAS_T0024_001,
    CONTROL_RULES,
    JOB_FAILED_RULE,
    OWASP_ML03,
    POSTURE_RULES,
)

POSTURE_HELP = {
    "authentication": "Require an API key or token on the prediction endpoint (the InvGuard "
    "gateway does), so that every query is attributable and can be limited.",
    "output_detail": "Return only the label, or the top-1/top-k scores, unless clients need the "
    "full probability vector.",
    "output_precision": "Round returned scores to 2 decimals or fewer, or return labels only.",
    "rate_limiting": "Rate-limit and cap queries per client (the InvGuard gateway does this).",
    "transport_security": "Serve the endpoint over HTTPS only.",
}

_MI_TAGS = ("security", "privacy", "model-inversion", "OWASP-ML03", "AML.T0024.001")
_AI_TAGS = ("security", "privacy", "attribute-inference", "OWASP-ML03", "AML.T0024.001")


@dataclass(frozen=True)
class RuleDoc:
    """One rule as reports and SARIF show it."""

    id: str
    name: str
    title: str
    description: str
    help: str | None
    tags: tuple[str, ...]
    precision: str | None = "high"
    help_uri: str | None = None  # the rule's own page (its first reference); else the tool's
    default_severity: str = "high"  # shown by code scanning when the run has no result of it


def _camel(text: str) -> str:
    return "".join(w.capitalize() for w in re.split(r"[^A-Za-z]+", text) if w)


def _attack_docs() -> list[RuleDoc]:
    docs = [
        RuleDoc(
            id=info.rule_id,
            name=_camel(info.name) + "ModelInversion",
            title=info.title,
            description=f"InvGuard ran the {info.name} attack ({info.access} access) and an "
            "independent evaluation model recognised the reconstructed training identities.",
            help="Severity follows attack accuracy relative to chance: see the InvGuard README, "
            "'Severity and risk'.",
            tags=_MI_TAGS,
            help_uri=ATLAS_T0024_001.url,
        )
        for info in ATTACK_REGISTRY.values()
    ]
    docs += [
        RuleDoc(
            id=tab.rule_id,
            name="AttributeInference",
            title=tab.title,
            description="InvGuard inferred a sensitive column of the model's training records and "
            "compared the strongest attack with an imputation baseline that never queries the "
            "model (exact McNemar test).",
            help="Severity follows the share of the imputation baseline's errors the attack "
            "recovers, when significant: see the InvGuard README, 'Severity and risk'.",
            tags=_AI_TAGS,
            help_uri=ATLAS_T0024_001.url,
        )
        for tab in TABULAR_ATTACKS.values()
    ]
    return docs


def rule_docs() -> list[RuleDoc]:
    """Every rule, in a stable order (SARIF rule indices follow it)."""
    docs = _attack_docs()
    docs += [
        RuleDoc(
            id=rule.id,
            name=_camel(rule.title),
            title=rule.title,
            description=rule.help,
            help=advice,
            tags=("security", "privacy", "declared-control"),
            precision="low",
            help_uri=ref.url if ref is not None else OWASP_ML03.url,
            default_severity="medium",
        )
        for rule, ref, advice in CONTROL_RULES.values()
    ]
    docs += [
        RuleDoc(
            id=rule.id,
            name=_camel(rule.title),
            title=rule.title,
            description=rule.help,
            help=POSTURE_HELP[check],
            tags=("security", "privacy", "endpoint-posture"),
            help_uri=refs[-1].url,
            default_severity=severity,
        )
        for check, (rule, severity, refs, _) in POSTURE_RULES.items()
    ]
    docs.append(
        RuleDoc(
            id=JOB_FAILED_RULE.id,
            name="AssessmentIncomplete",
            title=JOB_FAILED_RULE.title,
            description=JOB_FAILED_RULE.help,
            help="Fix the cause named in the finding (an unreachable endpoint, a missing file, a "
            "budget too small) and run the assessment again: finished jobs are reused.",
            tags=("assessment-error",),
            precision=None,
            default_severity="medium",
        )
    )
    return docs


__all__ = ["RuleDoc", "rule_docs"]
