"""Render an :class:`~invguard.assess.records.Assessment` as HTML, JSON and SARIF 2.1.0."""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import yaml

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


def _rules(worst: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every rule of the catalogue as a SARIF ``reportingDescriptor``, each with the
    ``security-severity`` GitHub code scanning reads from the rule: the worst severity of the rule's
    results in this run (``worst``), else the rule's default."""
    rules: list[dict[str, Any]] = []
    for doc in rule_docs():
        severity = worst.get(doc.id, doc.default_severity)
        rules.append(
            {
                "id": doc.id,
                "name": doc.name,
                "shortDescription": {"text": doc.title},
                "fullDescription": {"text": doc.description},
                "helpUri": doc.help_uri or INFORMATION_URI,
                "help": {"text": doc.help or doc.description},
                "defaultConfiguration": {"level": SARIF_LEVEL[severity]},
                "properties": {
                    "tags": list(doc.tags),
                    "precision": doc.precision or "medium",
                    "security-severity": SECURITY_SEVERITY[severity],
                },
            }
        )
    return rules


def _node_region(node: yaml.Node) -> dict[str, int]:
    """A SARIF region (1-based lines and columns) spanning a YAML node, up to its last character
    (a block node's end mark lies at the start of whatever follows it)."""
    end, buf = node.end_mark, node.end_mark.buffer
    end_line = end.line + 1
    if isinstance(buf, str):
        i = end.pointer
        while i > node.start_mark.pointer and buf[i - 1] in " \t\r\n":
            i -= 1
        end_line = buf.count("\n", 0, i) + 1
    return {
        "startLine": node.start_mark.line + 1,
        "startColumn": node.start_mark.column + 1,
        "endLine": max(end_line, node.start_mark.line + 1),
    }


def _system_regions(config_path: str) -> dict[str, dict[str, int]]:
    """The region of each system's entry in the configuration file, from PyYAML's node marks
    (block or flow style alike)."""
    try:
        root = yaml.compose(Path(config_path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    if not isinstance(root, yaml.MappingNode):
        return {}
    systems = next((v for k, v in root.value if getattr(k, "value", None) == "systems"), None)
    regions: dict[str, dict[str, int]] = {}
    for item in systems.value if isinstance(systems, yaml.SequenceNode) else []:
        if not isinstance(item, yaml.MappingNode):
            continue
        ids = [v.value for k, v in item.value if k.value == "id" and isinstance(v, yaml.ScalarNode)]
        if ids and ids[0] not in regions:
            regions[ids[0]] = _node_region(item)
    return regions


def sarif_root(config_path: str | Path) -> Path:
    """Where SARIF paths are relative to: the git top level above the configuration file, else
    the configuration's folder."""
    folder = Path(config_path).resolve().parent
    return next((d for d in (folder, *folder.parents) if (d / ".git").exists()), folder)


def _artifact_uri(config_path: str | Path, root: Path | None) -> str:
    path = Path(config_path).resolve()
    base = (root or sarif_root(path)).resolve()
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_uri()


def render_sarif(assessment: Assessment, root: Path | None = None) -> str:
    """SARIF 2.1.0 for code scanning; paths relative to ``root`` (default :func:`sarif_root`)."""
    worst: dict[str, str] = {}
    for f in assessment.findings:
        if not f.passed and SEVERITY_RANK[f.severity] > SEVERITY_RANK.get(
            worst.get(f.rule_id, ""), -1
        ):
            worst[f.rule_id] = f.severity
    rules = _rules(worst)
    index = {r["id"]: i for i, r in enumerate(rules)}
    uri = _artifact_uri(assessment.config_path, root)
    regions = _system_regions(assessment.config_path)
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
                                "region": regions.get(system.id, {"startLine": 1}),
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
