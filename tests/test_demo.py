"""`invguard demo` end to end: the README's main job, on the real faces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from invguard.cli import main
from invguard.models import ModelCache

pytestmark = pytest.mark.slow


def test_demo_writes_a_report_with_all_40_identities(
    model_cache: ModelCache, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "invguard-report"
    code = main(["demo", "--out", str(out), "--cache-dir", str(model_cache.root), "-q"])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "attack accuracy top-1" in stdout
    data = json.loads((out / "report.json").read_text())
    assert len(data["per_class"]) == 40
    assert data["metrics"]["top1_accuracy"] >= 0.8
    assert data["target"]["name"] == "mlp"
    html = (out / "report.html").read_text()
    assert html.count("<img ") == 80
    assert (out / "gallery.png").stat().st_size > 10_000
