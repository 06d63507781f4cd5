"""Render an :class:`~invguard.assess.records.Assessment` as HTML, JSON and SARIF 2.1.0."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from markupsafe import Markup

from invguard import __version__
from invguard.catalog.docs import rule_docs
from invguard.catalog.rules import SEVERITY_RANK
from invguard.report.charts import (
    PALETTE,
    VERDICT_COLOUR,
    Bar,
    Group,
    RefLine,
    TrendPoint,
    bar_chart,
    risk_trend_chart,
)
from invguard.report.images import data_uri, png_bytes
from invguard.report.templating import render

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

# One past run of a system: (run id, finished at, risk score), as HistoryStore.risk_history gives.
RiskPoint = tuple[int, str, float]


# The calibration rows in the judges' order (invguard.judges.CALIBRATION_ROWS; a test checks),
# which stored evidence loses (JSON with sorted keys).
CALIBRATION_ORDER = ("noise", "grey", "class_mean", "held_out", "artefacts", "public_lookalike")


def _calibration_rows(ev: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    rows = dict(ev.get("calibration") or {})
    rank = {r: i for i, r in enumerate(CALIBRATION_ORDER)}
    return sorted(rows.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))


def _image_chart(ev: Mapping[str, Any]) -> Markup:
    """Top-1 per judge and the verdict, on the reconstructions and each calibration row."""
    judges: Mapping[str, Mapping[str, Any]] = ev["judges"]
    names = {
        n: n if j.get("status", "reliable") == "reliable" else f"{n} ({j['status']})"
        for n, j in judges.items()
    }
    series = {names[n]: PALETTE[i % len(PALETTE)] for i, n in enumerate(judges)}
    series["verdict"] = VERDICT_COLOUR
    groups = [
        Group(
            "reconstructions",
            (
                *(Bar(names[n], j.get("top1")) for n, j in judges.items()),
                Bar("verdict", ev.get("top1_accuracy")),
            ),
        )
    ]
    for row, c in _calibration_rows(ev):
        bars = [Bar(names[n], c.get(n)) for n in judges]
        groups.append(
            Group(str(row).replace("_", " "), (*bars, Bar("verdict", c.get("verdict_top1"))))
        )
    chance = float(ev.get("chance", 0.0))
    return bar_chart(
        groups,
        series=series,
        lines=[RefLine(f"chance {chance:.3f}", chance)],
        title=f"{ev.get('attack', 'attack')}: top-1 accuracy per judge against chance",
        x_label="top-1 accuracy (share of identities named right)",
    )


def _tabular_chart(ev: Mapping[str, Any]) -> Markup:
    """The strongest attribute attack's accuracy against the imputation and prior baselines."""
    name = str(ev.get("best_attack", "attack"))
    bars = [Group("training records", (Bar(name, ev["accuracy"]),))]
    if ev.get("non_member_accuracy") is not None:
        bars.append(Group("held-out records", (Bar(name, ev["non_member_accuracy"]),)))
    base, prior = float(ev["baseline_accuracy"]), ev.get("prior_accuracy")
    lines = [RefLine(f"{ev.get('baseline', 'baseline')} baseline {base:.3f}", base)]
    if prior is not None:
        lines.append(RefLine(f"prior {float(prior):.3f}", float(prior), "#667085", "2 3"))
    return bar_chart(
        bars,
        series={name: PALETTE[0]},
        lines=lines,
        title=f"'{ev.get('attribute', 'attribute')}': strongest attack against the baselines",
        x_label="accuracy (share of records whose attribute is inferred right)",
    )


def finding_chart(evidence: Mapping[str, Any]) -> Markup | None:
    """The chart of a measured finding's evidence, or None when it has no accuracies."""
    if isinstance(evidence.get("judges"), Mapping) and evidence["judges"]:
        return _image_chart(evidence)
    if "baseline_accuracy" in evidence and "accuracy" in evidence:
        return _tabular_chart(evidence)
    if "top1_accuracy" in evidence and "chance" in evidence:
        chance = float(evidence["chance"])
        return bar_chart(
            [Group("reconstructions", (Bar("evaluation model", evidence["top1_accuracy"]),))],
            series={"evaluation model": PALETTE[0]},
            lines=[RefLine(f"chance {chance:.3f}", chance)],
            title=f"{evidence.get('attack', 'attack')}: top-1 accuracy against chance",
            x_label="top-1 accuracy",
        )
    return None


def risk_trend(
    system_id: str,
    risk: float,
    run_id: int,
    finished: str,
    past: Sequence[RiskPoint],
) -> Markup | None:
    """The risk over past runs and this one (None with fewer than two runs)."""
    runs = {int(r): (str(at), float(v)) for r, at, v in past if int(r) != run_id}
    runs[run_id] = (finished, float(risk))
    if len(runs) < 2:
        return None
    points = [
        TrendPoint(f"#{r}", v, at.replace("T", " ").split("+")[0], current=r == run_id)
        for r, (at, v) in sorted(runs.items())
    ]
    return risk_trend_chart(points, title=f"{system_id}: risk score over {len(points)} runs")


def _galleries(assessment: Assessment) -> dict[str, list[dict[str, Any]]]:
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
    return galleries


def _defense_plot(defenses: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """(data URI of the defences plot, or a note saying why there is none)."""
    if defenses is None:
        return None, None
    from invguard.defenses.evaluation import DefenseEvaluation
    from invguard.report.defenses import PLOT_MISSING, plot_available, render_plot

    ev = DefenseEvaluation.from_dict(dict(defenses))
    if not ev.threats:
        return None, None
    if not plot_available():
        return None, PLOT_MISSING
    return data_uri(render_plot(ev)), None


def render_html(
    assessment: Assessment, risk_history: Mapping[str, Sequence[RiskPoint]] | None = None
) -> str:
    """The self-contained HTML report; ``risk_history``: each system's past runs of the same
    configuration (:meth:`~invguard.assess.history.HistoryStore.risk_history`), for the trend."""
    data = assessment.to_dict()
    passed, reason = assessment.gate()
    history = risk_history or {}
    defense_plots: dict[str, str | None] = {}
    defense_notes: dict[str, str | None] = {}
    trends: dict[str, Markup | None] = {}
    for s in assessment.systems:
        defense_plots[s.id], defense_notes[s.id] = _defense_plot(s.defenses)
        trends[s.id] = risk_trend(
            s.id, s.risk_score, assessment.run_id, assessment.finished, history.get(s.id, ())
        )
    charts = {f.id: finding_chart(f.evidence) for f in assessment.findings if f.kind == "measured"}
    return render(
        "assessment.html",
        a=data,
        charts=charts,
        calibration_rows=_calibration_rows,
        trends=trends,
        defense_plots=defense_plots,
        defense_notes=defense_notes,
        galleries=_galleries(assessment),
        gate_passed=passed,
        gate_reason=reason,
        severity_rank=SEVERITY_RANK,
        recommended_by={s.id: _recommended(s.defenses) for s in assessment.systems},
    )


def _recommended(defenses: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """Row name -> the threat models that recommend it; the undefended row never appears."""
    out: dict[str, list[str]] = {}
    if not defenses:
        return out
    kinds = {r["name"]: r.get("kind") for r in defenses.get("rows", [])}
    for key, t in dict(defenses.get("threats") or {}).items():
        name = t.get("recommended")
        if name is not None and kinds.get(name) != "none":
            out.setdefault(name, []).append(key)
    return out
