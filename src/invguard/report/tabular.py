"""The HTML report of ``invguard tabular assess``, in the style of the assessment report, read from
its ``report.json`` (format ``invguard-tabular-assessment``): so both carry the same numbers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from markupsafe import Markup

from invguard import __version__
from invguard.errors import InvalidParameterError
from invguard.report.charts import PALETTE, Bar, Group, RefLine, bar_chart
from invguard.report.io import write_atomic
from invguard.report.templating import render

TABULAR_FORMAT = "invguard-tabular-assessment"
SIGNIFICANCE = 0.01
BASELINE_COLOUR = "#98a2b3"


def _p(test: Mapping[str, Any] | None) -> float | None:
    return None if not test else float(test["p_value"])


def _adv(row: Mapping[str, Any], key: str) -> float | None:
    a = row.get(key)
    return None if not a else float(a["accuracy"])


def _verdict(assessment: Mapping[str, Any]) -> dict[str, Any]:
    """The strongest attack against the imputation baseline (the prior's when there is none)."""
    rows = assessment["rows"]
    attacks = [r for r in rows if not r["baseline"]]
    imputation = next((r for r in rows if r["attack"] == "imputation"), None)
    prior = next((r for r in rows if r["attack"] == "prior"), rows[0])
    base = imputation or prior
    vs = "imputation" if imputation is not None else "prior"
    out: dict[str, Any] = {
        "baseline": base["label"],
        "baseline_accuracy": base["accuracy"],
        "prior_accuracy": prior["accuracy"],
        "best": None,
        "leak": False,
    }
    if not attacks:
        return out
    best = max(attacks, key=lambda r: r["accuracy"])
    p = _p(best.get(f"mcnemar_vs_{vs}"))
    gain = float(best["accuracy"]) - float(base["accuracy"])
    errors = 1.0 - float(base["accuracy"])
    out.update(
        best=best["label"],
        accuracy=best["accuracy"],
        advantage=gain,
        lift=gain / errors if errors > 0 else 0.0,
        p_value=p,
        leak=p is not None and p < SIGNIFICANCE and gain > 0,
    )
    return out


def _chart(assessment: Mapping[str, Any], verdict: Mapping[str, Any]) -> Markup:
    """Every attack's accuracy (baselines grey) against the imputation and prior lines."""
    groups = [
        Group(r["label"], (Bar("baseline" if r["baseline"] else "attack", r["accuracy"]),))
        for r in assessment["rows"]
    ]
    lines = [
        RefLine(f"imputation {verdict['baseline_accuracy']:.3f}", verdict["baseline_accuracy"])
    ]
    if verdict["baseline_accuracy"] != verdict["prior_accuracy"]:
        prior = float(verdict["prior_accuracy"])
        lines.append(RefLine(f"prior {prior:.3f}", prior, "#667085", "2 3"))
    return bar_chart(
        groups,
        series={"attack": PALETTE[0], "baseline": BASELINE_COLOUR},
        lines=lines,
        title=f"'{assessment['attribute']}' of {assessment['population']}: accuracy per attack",
        x_label="accuracy (share of records whose attribute is inferred right)",
    )


def _value_table(assessment: Mapping[str, Any]) -> dict[str, Any]:
    """Per value of the attribute (columns): how many records hold it, and how many each attack
    (rows) guessed."""
    values = [str(v) for v in assessment["values"]]
    truth = dict(assessment.get("truth_counts") or {})
    rows = [
        {
            "label": str(r.get("label", r.get("attack", "?"))),
            "counts": [dict(r.get("predicted_counts") or {}).get(v) for v in values],
        }
        for r in assessment.get("results", [])
    ]
    return {"values": values, "truth": [truth.get(v) for v in values], "rows": rows}


def tabular_context(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The template's data: each assessment with its verdict, chart and per-value table."""
    if doc.get("format") != TABULAR_FORMAT:
        raise InvalidParameterError(
            f"format must be '{TABULAR_FORMAT}' (a tabular assess report.json), "
            f"got {doc.get('format')!r}"
        )
    sections = []
    for a in doc.get("assessments", []):
        verdict = _verdict(a)
        sections.append(
            {
                "a": a,
                "verdict": verdict,
                "chart": _chart(a, verdict),
                "per_value": _value_table(a),
                "n": a["rows"][0].get("n") if a["rows"] else 0,
                "configs": [
                    (r.get("label", r.get("attack")), r.get("config") or {}, r.get("seed"))
                    for r in a.get("results", [])
                ],
            }
        )
    return {"doc": doc, "meta": dict(doc.get("meta") or {}), "sections": sections}


def render_tabular_html(doc: Mapping[str, Any]) -> str:
    """The self-contained HTML page of a tabular report document."""
    return render(
        "tabular.html",
        **tabular_context(doc),
        invguard_version=__version__,
        significance=SIGNIFICANCE,
        adv=_adv,
        p_of=_p,
    )


def write_tabular_html(json_path: str | Path, out: str | Path | None = None) -> Path:
    """Render ``report.json`` to ``report.html`` beside it (or to ``out``), atomically."""
    src = Path(json_path)
    doc = json.loads(src.read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise InvalidParameterError(f"{src}: expected a JSON object, got {type(doc).__name__}")
    return write_atomic(out or src.with_name("report.html"), render_tabular_html(doc))


__all__ = ["render_tabular_html", "tabular_context", "write_tabular_html"]
