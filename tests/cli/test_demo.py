"""`invguard demo` end to end: the README's main job, on the real faces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from invguard.cli import main
from invguard.judges import face_embedding_available
from invguard.models import ModelCache
from invguard.review import export_sheet

pytestmark = pytest.mark.slow


def test_demo_writes_a_report_with_all_40_identities(
    model_cache: ModelCache, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "invguard-report"
    code = main(["demo", "--out", str(out), "--cache-dir", str(model_cache.root), "-q"])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "VERDICT top-1" in stdout
    for row in ("noise", "grey", "class_mean", "held_out", "artefacts"):
        assert row in stdout
    data = json.loads((out / "report.json").read_text())
    assert len(data["per_class"]) == 40
    j = data["judgement"]
    assert j["verdict_top1"] >= 0.8  # measured 1.000 (evaluation model 0.975, pixel 1.000)
    assert j["calibration"]["held_out"]["verdict_top1"] >= 0.9
    for row in ("noise", "grey", "artefacts"):
        assert j["calibration"][row]["verdict_top1"] <= 0.05, row  # 2x chance
    assert set(data["per_class"][0]["judges"]) == set(j["judges"])
    assert data["metrics"]["top1_accuracy"] >= 0.8
    assert data["target"]["name"] == "mlp"
    html = (out / "report.html").read_text()
    assert html.count("<img ") == 80
    assert "Judges and calibration rows" in html
    if face_embedding_available():  # the face detector's naturalness column, beside the judges
        assert "faces detected" in stdout
        assert "<th>faces detected</th>" in html
        assert j["faces_detected"] >= 0.2  # MI-FACE on the MLP: measured 0.450
        assert j["calibration"]["held_out"]["faces_detected"] >= 0.95
        assert j["calibration"]["noise"]["faces_detected"] == 0.0
        found = [row["face_detected"] for row in data["per_class"]]
        assert sum(found) == round(j["faces_detected"] * 40)
    assert (out / "gallery.png").stat().st_size > 10_000
    # the report folder feeds a blind human review sheet
    sheet, key = export_sheet(out)
    assert sheet.is_file()
    assert key.is_file()
    assert len(json.loads(key.read_text())["pairs"]) == 80
