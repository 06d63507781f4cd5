"""Every rule of the catalogue in one shape (id, name, title, description, help, tags), for the
SARIF rules, the reports and the docs: attack rules, the tabular rule, declared controls, measured
endpoint posture and the incomplete-assessment rule."""

from __future__ import annotations

import re
from dataclasses import dataclass

from invguard.catalog.attacks import ATTACK_REGISTRY, TABULAR_ATTACKS
from invguard.catalog.rules import CONTROL_RULES, JOB_FAILED_RULE, POSTURE_RULES

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
    documented: bool = True  # has a help page (``helpUri``)


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
        )
        for rule, _, advice in CONTROL_RULES.values()
    ]
    docs += [
        RuleDoc(
            id=rule.id,
            name=_camel(rule.title),
            title=rule.title,
            description=rule.help,
            help=None,
            tags=("security", "privacy", "endpoint-posture"),
        )
        for rule, _, _, _ in POSTURE_RULES.values()
    ]
    docs.append(
        RuleDoc(
            id=JOB_FAILED_RULE.id,
            name="AssessmentIncomplete",
            title=JOB_FAILED_RULE.title,
            description=JOB_FAILED_RULE.help,
            help=None,
            tags=("assessment-error",),
            precision=None,
            documented=False,
        )
    )
    return docs


__all__ = ["RuleDoc", "rule_docs"]
