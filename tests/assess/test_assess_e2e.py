"""`invguard init` + `invguard assess` end to end on the real faces: findings against measured
metrics, the CI gate's exit codes, SARIF against the official schema, history, audit, resume, Ray,
and the HTML report in a real browser."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from invguard.api import verdict
from invguard.assess.findings import measure_leakage, severity_of
from invguard.attacks import InversionRequest, MIFace
from invguard.cli import main
from invguard.data import ImageDataset
from invguard.judges import face_embedding_available
from invguard.metrics import Evaluator, evaluate_inversion
from invguard.models import ModelCache, TrainedModel
from invguard.targets import TorchTarget

pytestmark = pytest.mark.slow

SCHEMA = Path(__file__).parents[1] / "fixtures" / "sarif-schema-2.1.0.json"


@pytest.fixture(scope="module")
def assessed(
    tmp_path_factory: pytest.TempPathFactory, model_cache: ModelCache
) -> tuple[Path, dict[str, Any]]:
    """`invguard init` then `invguard assess` once; later tests read its outputs."""
    root = tmp_path_factory.mktemp("assess")
    cfg = root / "invguard.yaml"
    assert main(["init", str(cfg)]) == 0
    code = main(["assess", "-c", str(cfg), "--cache-dir", str(model_cache.root), "-q"])
    assert code == 1  # the undefended MLP trips the default gate (fail_on: high)
    report = json.loads((root / "invguard-assessment" / "assessment.json").read_text())
    return root, report


def _measured(report: dict[str, Any], system: str) -> dict[str, Any]:
    s = next(s for s in report["systems"] if s["id"] == system)
    return next(f for f in s["findings"] if f["kind"] == "measured")


def test_findings_match_the_measured_metrics(
    assessed: tuple[Path, dict[str, Any]],
    faces: ImageDataset,
    faces_mlp: TrainedModel,
    faces_softmax: TrainedModel,
    faces_evaluator: Evaluator,
    model_cache: ModelCache,
) -> None:
    root, report = assessed
    if face_embedding_available():
        html = (root / "invguard-assessment" / "assessment.html").read_text()
        assert '<th class="num">faces detected</th>' in html
    for system, model in (("faces-mlp", faces_mlp), ("faces-softmax", faces_softmax)):
        finding = _measured(report, system)
        ev = finding["evidence"]
        # the same attack run directly gives the same numbers
        result = MIFace().run(
            TorchTarget(model.model, input_shape=faces.image_shape), InversionRequest(), rng=0
        )
        direct = evaluate_inversion(result, faces_evaluator, faces).summary()
        assert ev["evaluation_model_top1"] == pytest.approx(direct["top1_accuracy"])
        assert ev["knn_distance"] == pytest.approx(direct["knn_distance"], rel=1e-4)
        # the finding's number is the judges' verdict, with every judge and calibration row shown
        judged = verdict(result, faces, target=model.model, cache=model_cache).summary()
        assert ev["top1_accuracy"] == pytest.approx(judged["verdict_top1"])
        assert set(ev["judges"]) == set(judged["judges"])
        assert ev["calibration"]["artefacts"]["verdict_top1"] <= 0.05
        assert ev["calibration"]["held_out"]["verdict_top1"] >= 0.9
        if face_embedding_available():  # the face detector's rate beside the judges
            assert ev["faces_detected"] == pytest.approx(judged["faces_detected"])
            assert ev["calibration"]["held_out"]["faces_detected"] >= 0.95
            assert ev["calibration"]["noise"]["faces_detected"] == 0.0
        # severity and risk follow the documented rules
        leak = measure_leakage(ev["top1_accuracy"], 40, ev["identities_attacked"])
        assert finding["severity"] == severity_of(leak)
        s = next(s for s in report["systems"] if s["id"] == system)
        missing = sum(1 for c in s["controls"] if c["status"] == "missing")
        assert s["risk_score"] == pytest.approx(min(1.0, leak.lift + 0.05 * missing), abs=1e-4)
    assert _measured(report, "faces-mlp")["severity"] == "critical"
    # the softmax regression's verdict (0.725-0.775 on different machines) straddles the 0.75
    # lift threshold between high and critical; the rule itself is checked above
    assert _measured(report, "faces-softmax")["severity"] in {"high", "critical"}
    mlp = next(s for s in report["systems"] if s["id"] == "faces-mlp")
    ctl = [f for f in mlp["findings"] if f["rule_id"] == "IG-CTL-004"]
    assert ctl[0]["kind"] == "declared"
    assert ctl[0]["severity"] == "medium"
    refs = {r["id"] for r in _measured(report, "faces-mlp")["references"]}
    assert {"OWASP ML03:2023", "AML.T0024.001"} <= refs


def test_gate_exit_codes_history_and_reuse(
    assessed: tuple[Path, dict[str, Any]],
    model_cache: ModelCache,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, report = assessed
    cfg = str(root / "invguard.yaml")
    base = ["assess", "-c", cfg, "--cache-dir", str(model_cache.root), "-q"]
    capsys.readouterr()
    assert main([*base, "--fail-on", "none"]) == 0
    out = capsys.readouterr().out
    assert "3 jobs, 3 reused" in out
    assert "(was 1.00 in run 1, +0.00)" in out
    assert main([*base, "--fail-on", "critical"]) == 1
    assert main(["history", "--history-db", str(root / "invguard-history.db")]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("run ")]
    assert len(lines) == 3
    assert "faces-mlp 1.00 critical" in lines[0]
    assert main(["audit", "verify", "--audit-db", str(root / "invguard-audit.db")]) == 0
    assert capsys.readouterr().out.startswith("ok: ")
    assert main(["audit", "log", "--audit-db", str(root / "invguard-audit.db"), "--action",
                 "finding", "--json"]) == 0  # fmt: skip
    entries = json.loads(capsys.readouterr().out)
    assert len(entries) == 3 * 4  # three runs, four findings each, all in the audit log
    reported = {f["severity"] for s in report["systems"] for f in s["findings"]}
    assert {"critical", "medium", "info"} <= reported
    assert {e["payload"]["severity"] for e in entries} == reported


def test_sarif_validates_against_the_official_schema(
    assessed: tuple[Path, dict[str, Any]],
) -> None:
    import jsonschema

    root, report = assessed
    sarif = json.loads((root / "invguard-assessment" / "assessment.sarif").read_text())
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft4Validator(schema).validate(sarif)
    results = sarif["runs"][0]["results"]
    assert len(results) == sum(len(s["findings"]) for s in report["systems"])
    crit = [r for r in results if r["properties"]["severity"] == "critical"]
    assert crit[0]["level"] == "error"
    assert crit[0]["kind"] == "fail"
    assert crit[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "invguard.yaml"
    rules = sarif["runs"][0]["tool"]["driver"]["rules"]
    assert all(r["ruleIndex"] < len(rules) for r in results)
    # the example's tabular system is assessed in the same run, its finding in the same SARIF
    (tab,) = [r for r in results if r["ruleId"] == "IG-AI-001"]
    assert rules[tab["ruleIndex"]]["id"] == "IG-AI-001"
    assert "census-income" in json.dumps(tab)
    # a broken log is rejected by the same schema (the check can fail)
    del sarif["runs"][0]["tool"]["driver"]["name"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate(sarif)


def test_html_report_in_headless_chromium(
    assessed: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("INVGUARD_REQUIRE_BROWSER"):
            pytest.fail("chromium is required (INVGUARD_REQUIRE_BROWSER) but not installed")
        pytest.skip("chromium not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    root, _ = assessed
    html = root / "invguard-assessment" / "assessment.html"
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1300, "height": 1800})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(html.as_uri())
        page.wait_for_load_state("load")
        total = page.evaluate("document.images.length")
        loaded = page.evaluate(
            "Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length"
        )
        shot = tmp_path / "assessment.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert errors == []
    assert total == 2 * 2 * 40  # two systems x 40 identities x (reconstruction, private image)
    assert loaded == total
    assert shot.stat().st_size > 50_000


def _resume_config(root: Path) -> Path:
    """Two jobs: a fast one first, then a slow one (long enough to kill the run between them)."""
    cfg = root / "invguard.yaml"
    cfg.write_text(
        """version: 1
name: resume test
systems:
  - id: faces-softmax
    target: {type: pytorch, reference: {arch: softmax}}
    data: {builtin: att-faces}
    attacks:
      - {name: miface, seeds: [0]}
  - id: faces-mlp-long
    target: {type: pytorch, reference: {arch: mlp}}
    data: {builtin: att-faces}
    attacks:
      - {name: miface, seeds: [0], budget: {iterations: 1200}, params: {patience: 1200}}
"""
    )
    return cfg


def _ok_jobs(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as c:
            return int(c.execute("SELECT COUNT(*) FROM jobs WHERE status='ok'").fetchone()[0])
    except sqlite3.Error:
        return 0


def _comparable(report: dict[str, Any], tolerant: bool = False) -> list[Any]:
    """Ids, severities and metrics; `tolerant` compares the k-NN distance to a relative 1e-4,
    because another process (Ray's workers, a resumed run) may sum in another order."""
    return [
        (s["id"], s["risk_score"], [(f["id"], f["severity"], f["evidence"].get("top1_accuracy"),
                                     _approx(f["evidence"].get("knn_distance"), tolerant))
                                    for f in s["findings"]])
        for s in report["systems"]
    ]  # fmt: skip


def _approx(value: float | None, tolerant: bool) -> Any:
    return pytest.approx(value, rel=1e-4) if tolerant and value is not None else value


def test_killed_assessment_resumes_without_redoing_jobs(
    tmp_path: Path, model_cache: ModelCache, capsys: pytest.CaptureFixture[str]
) -> None:
    killed = tmp_path / "killed"
    killed.mkdir()
    cfg = _resume_config(killed)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "invguard.cli", "assess", "-c", str(cfg), "--cache-dir",
         str(model_cache.root), "-q"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 600
    while _ok_jobs(killed / "invguard-history.db") < 1:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _ok_jobs(killed / "invguard-history.db") == 1
    assert not (killed / "invguard-assessment").exists()  # no report from the killed run

    capsys.readouterr()
    main(["assess", "-c", str(cfg), "--cache-dir", str(model_cache.root), "-q"])
    assert "2 jobs, 1 reused, 0 failed" in capsys.readouterr().out
    resumed = json.loads((killed / "invguard-assessment" / "assessment.json").read_text())
    jobs = {j["attack"] + s["id"]: j["reused"] for s in resumed["systems"] for j in s["jobs"]}
    assert jobs == {"mifacefaces-softmax": True, "mifacefaces-mlp-long": False}

    whole = tmp_path / "whole"
    whole.mkdir()
    main(["assess", "-c", str(_resume_config(whole)), "--cache-dir", str(model_cache.root), "-q"])
    uninterrupted = json.loads((whole / "invguard-assessment" / "assessment.json").read_text())
    assert _comparable(resumed) == _comparable(uninterrupted, tolerant=True)


def test_ray_executor_gives_the_same_metrics(
    assessed: tuple[Path, dict[str, Any]], tmp_path: Path, model_cache: ModelCache
) -> None:
    root, report = assessed
    out = tmp_path / "ray-report"
    code = main(
        ["assess", "-c", str(root / "invguard.yaml"), "--executor", "ray", "--cache-dir",
         str(model_cache.root), "--history-db", str(tmp_path / "h.db"), "--out", str(out),
         "--no-audit", "-q", "--fail-on", "none"]
    )  # fmt: skip
    assert code == 0
    ray_report = json.loads((out / "assessment.json").read_text())
    assert ray_report["executor"] == "ray"
    assert ray_report["jobs"]["reused"] == 0
    assert _comparable(ray_report) == _comparable(report, tolerant=True)
