"""SARIF that GitHub code scanning renders fully (issue 15): per-rule security-severity, help and
a specific helpUri, paths relative to the repository root, regions from the YAML node marks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from invguard.assess.config import load_config
from invguard.assess.engine import run_assessment
from invguard.report.assessment import render_sarif, sarif_root

SCHEMA = Path(__file__).parents[1] / "fixtures" / "sarif-schema-2.1.0.json"


def _noise_table(path: Path, rows: int = 1000) -> None:
    """Coin flips (as in tests/assess/test_tabular_assessment.py): only a model that memorised its
    rows can give ``group`` away."""
    rng = np.random.default_rng(0)
    s, label = rng.integers(0, 2, rows), rng.integers(0, 2, rows)
    a, b = rng.random(rows), rng.random(rows)
    lines = ["a,b,group,label"] + [
        f"{a[i]:.4f},{b[i]:.4f},{'xy'[s[i]]},{['no', 'yes'][label[i]]}" for i in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def assessed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, dict[str, Any]]:
    repo = tmp_path_factory.mktemp("repo")
    (repo / ".git").mkdir()  # the repository root SARIF paths are relative to
    folder = repo / "ml" / "security"
    folder.mkdir(parents=True)
    _noise_table(folder / "t.csv")
    table = "{tabular: {csv: t.csv, label: label, sensitive: group, rows: 400}}"
    (folder / "invguard.yaml").write_text(
        "version: 1\noutput_dir: out\nhistory_db: h.db\naudit_db: null\n"
        "systems:\n"
        "  - id: tree\n"
        "    target: {type: reference, arch: tree}\n"
        f"    data: {table}\n"
        "    attacks: [{name: attribute}]\n"
        # a system in flow style: its region starts mid-line
        f"  - {{id: logreg, target: {{type: reference, arch: logreg}}, data: {table}, "
        "attacks: [{name: attribute}]}\n",
        encoding="utf-8",
    )
    assessment = run_assessment(
        load_config(folder / "invguard.yaml"), cache_dir=repo / "cache", use_audit=False
    )
    sarif = json.loads((folder / "out" / "assessment.sarif").read_text())
    return repo, assessment, sarif


def test_sarif_validates_and_meets_the_code_scanning_fields(
    assessed: tuple[Path, Any, dict[str, Any]],
) -> None:
    _, _, sarif = assessed
    jsonschema.Draft4Validator(json.loads(SCHEMA.read_text())).validate(sarif)
    rules = sarif["runs"][0]["tool"]["driver"]["rules"]
    for rule in rules:
        severity = float(rule["properties"]["security-severity"])  # a number as a string
        assert 0.0 <= severity <= 10.0, rule["id"]
        assert rule["help"]["text"], rule["id"]
        assert rule["helpUri"].startswith("https://"), rule["id"]
        assert rule["properties"]["precision"] in {"very-high", "high", "medium", "low"}
        assert rule["properties"]["tags"], rule["id"]
    assert len({r["helpUri"] for r in rules}) >= 4  # each rule's own page, not one generic one
    for result in sarif["runs"][0]["results"]:
        assert result["partialFingerprints"]["invguardFindingId/v1"]
        assert result["ruleId"] == rules[result["ruleIndex"]]["id"]


def test_rule_severity_is_the_worst_result_of_the_run(
    assessed: tuple[Path, Any, dict[str, Any]],
) -> None:
    _, assessment, sarif = assessed
    rules = {r["id"]: r for r in sarif["runs"][0]["tool"]["driver"]["rules"]}
    worst = max(
        (f for f in assessment.findings if f.rule_id == "IG-AI-001"),
        key=lambda f: ["info", "low", "medium", "high", "critical"].index(f.severity),
    )
    expected = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "0.0"}
    assert rules["IG-AI-001"]["properties"]["security-severity"] == expected[worst.severity]
    assert worst.severity == "high"  # the memorising tree leaks its rows' attribute


def test_paths_are_relative_to_the_repository_and_regions_come_from_yaml(
    assessed: tuple[Path, Any, dict[str, Any]], tmp_path: Path
) -> None:
    repo, assessment, sarif = assessed
    config = repo / "ml" / "security" / "invguard.yaml"
    assert sarif_root(config) == repo.resolve()
    regions = {}
    for result in sarif["runs"][0]["results"]:
        loc = result["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uri"] == "ml/security/invguard.yaml"
        regions[result["properties"]["system"]] = loc["region"]
    assert regions["tree"] == {"startLine": 6, "startColumn": 5, "endLine": 9}
    assert regions["logreg"]["startLine"] == 10
    assert regions["logreg"]["startColumn"] == 5  # the "{" of "  - {id: logreg, ..."
    # another root, and a root the file is not under (an absolute file URI)
    other = json.loads(render_sarif(assessment, repo / "ml"))
    uri = other["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert uri["uri"] == "security/invguard.yaml"
    apart = json.loads(render_sarif(assessment, tmp_path))
    uri = apart["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert uri["uri"] == config.resolve().as_uri()


def test_sarif_root_must_be_a_folder(
    assessed: tuple[Path, Any, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    from invguard.cli import main

    repo, _, _ = assessed
    config = repo / "ml" / "security" / "invguard.yaml"
    assert main(["assess", "-c", str(config), "--sarif-root", str(repo / "nope"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"invguard: error: --sarif-root: no such folder: {repo / 'nope'}"]
