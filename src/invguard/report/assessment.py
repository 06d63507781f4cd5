"""Render an :class:`~invguard.assess.engine.Assessment` as HTML, JSON and SARIF 2.1.0."""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from invguard import __version__
from invguard.catalog.docs import rule_docs
from invguard.catalog.rules import SEVERITY_RANK
from invguard.report.images import data_uri, png_bytes

if TYPE_CHECKING:
    from invguard.assess.records import Assessment

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://owasp.org/www-project-machine-learning-security-top-10/"
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "0.0"}
SARIF_LEVEL = {
    "critical": "error",
    "high": "error",
    "medium": "warning",
    "low": "note",
    "info": "note",
}


def render_json(assessment: Assessment) -> str:
    return json.dumps(assessment.to_dict(), indent=2) + "\n"


# ------------------------------------------------------------------------------------------------
# SARIF


def _rules() -> list[dict[str, Any]]:
    """Every rule of the catalogue as a SARIF ``reportingDescriptor``."""
    rules: list[dict[str, Any]] = []
    for doc in rule_docs():
        rule: dict[str, Any] = {
            "id": doc.id,
            "name": doc.name,
            "shortDescription": {"text": doc.title},
            "fullDescription": {"text": doc.description},
        }
        if doc.documented:
            rule["helpUri"] = INFORMATION_URI
        if doc.help:
            rule["help"] = {"text": doc.help}
        rule["properties"] = {"tags": list(doc.tags)}
        if doc.precision:
            rule["properties"]["precision"] = doc.precision
        rules.append(rule)
    return rules


def _system_lines(config_path: str) -> dict[str, int]:
    """Line (1-based) of each ``id: <system>`` in the configuration file, for SARIF regions."""
    lines: dict[str, int] = {}
    try:
        text = Path(config_path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return lines
    for i, line in enumerate(text, start=1):
        m = re.match(r"^\s*-?\s*id:\s*['\"]?([A-Za-z0-9][A-Za-z0-9_.-]*)['\"]?\s*(#.*)?$", line)
        if m and m.group(1) not in lines:
            lines[m.group(1)] = i
    return lines


def render_sarif(assessment: Assessment) -> str:
    rules = _rules()
    index = {r["id"]: i for i, r in enumerate(rules)}
    uri = Path(assessment.config_path).name
    lines = _system_lines(assessment.config_path)
    results = []
    for system in assessment.systems:
        for f in system.findings:
            level = "none" if f.passed else SARIF_LEVEL[f.severity]
            kind = "pass" if f.passed else ("informational" if f.severity == "info" else "fail")
            if kind != "fail":
                level = "none" if f.passed else "note"
            results.append(
                {
                    "ruleId": f.rule_id,
                    "ruleIndex": index[f.rule_id],
                    "kind": kind,
                    "level": level,
                    "message": {"text": f"{f.summary} Recommendation: {f.recommendation}"},
                    "locations": [
                        {
                            "physicalLocation": {
                                "artifactLocation": {"uri": uri},
                                "region": {"startLine": lines.get(system.id, 1)},
                            },
                            "logicalLocations": [{"name": system.id, "kind": "module"}],
                        }
                    ],
                    "partialFingerprints": {"invguardFindingId/v1": f.id},
                    "properties": {
                        "severity": f.severity,
                        "security-severity": SECURITY_SEVERITY[f.severity],
                        "system": system.id,
                        "findingKind": f.kind,
                        "riskScore": system.risk_score,
                        "evidence": f.evidence,
                        "references": [r.id for r in f.references],
                    },
                }
            )
    passed, reason = assessment.gate()
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "InvGuard",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "informationUri": INFORMATION_URI,
                        "rules": rules,
                    }
                },
                "automationDetails": {"id": f"invguard/{assessment.name}/{assessment.run_id}"},
                "invocations": [
                    {
                        "executionSuccessful": assessment.jobs_failed == 0,
                        "startTimeUtc": assessment.started.replace("+00:00", "Z"),
                        "endTimeUtc": assessment.finished.replace("+00:00", "Z"),
                        "properties": {
                            "gate": {
                                "failOn": assessment.fail_on,
                                "passed": passed,
                                "reason": reason,
                            }
                        },
                    }
                ],
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2) + "\n"


# ------------------------------------------------------------------------------------------------
# HTML


def render_html(assessment: Assessment) -> str:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: files("invguard.report").joinpath("templates", name).read_text("utf-8")
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    data = assessment.to_dict()
    galleries: dict[str, list[dict[str, Any]]] = {}
    for fid, g in assessment.galleries.items():
        scale = max(1, 96 // max(1, int(g.reconstructions.shape[2])))
        galleries[fid] = [
            {
                "name": g.names[i],
                "hit": g.hits[i],
                "recon": data_uri(png_bytes(g.reconstructions[i], scale=scale)),
                "private": data_uri(png_bytes(g.nearest[i], scale=scale)),
            }
            for i in range(len(g.reconstructions))
        ]
    passed, reason = assessment.gate()
    defense_plots: dict[str, str | None] = {}
    for s in assessment.systems:
        defense_plots[s.id] = None
        if s.defenses is not None:
            from invguard.defenses.evaluation import DefenseEvaluation
            from invguard.report.defenses import render_plot

            ev = DefenseEvaluation.from_dict(s.defenses)
            defense_plots[s.id] = data_uri(render_plot(ev)) if ev.threats else None
    return env.get_template("assessment.html").render(
        a=data,
        defense_plots=defense_plots,
        galleries=galleries,
        gate_passed=passed,
        gate_reason=reason,
        severity_rank=SEVERITY_RANK,
    )
