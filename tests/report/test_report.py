from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from invguard.attacks import InversionRequest, MIFace
from invguard.data import ImageDataset
from invguard.metrics import Evaluator, evaluate_inversion
from invguard.models import TrainedModel
from invguard.report import InversionReport
from invguard.targets import TorchTarget
from tests.report.html_checks import assert_every_figure_enlarges, assert_self_contained


def _report(digits: ImageDataset, model: TrainedModel, evaluator: Evaluator) -> InversionReport:
    target = TorchTarget(model.model, input_shape=digits.image_shape)
    result = MIFace(max_iterations=200).run(target, InversionRequest(), rng=0)
    return InversionReport(
        title="digits <test> & report",
        dataset=digits,
        target={"name": "mlp", "test_accuracy": model.test_accuracy, "source": "fixture"},
        evaluator={"name": "evalnet", "description": "fixture"},
        result=result,
        metrics=evaluate_inversion(result, evaluator, digits),
    )


def test_html_is_self_contained_and_shows_every_pair(
    digits: ImageDataset, digits_mlp: TrainedModel, digits_evaluator: Evaluator, tmp_path: Path
) -> None:
    report = _report(digits, digits_mlp, digits_evaluator)
    paths = report.write(tmp_path / "out")
    html = paths["html"].read_text()
    srcs = re.findall(r'src="([^"]*)"', html)
    assert len(srcs) == 20  # reconstruction + nearest private image for 10 classes
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    for s in srcs[:2]:
        Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))).verify()
    assert "http://" not in html
    assert "https://" not in html
    assert "<link" not in html
    assert "<script" not in html
    assert_self_contained(html)
    assert assert_every_figure_enlarges(html) == 10  # each pair opens full-window
    assert "digits &lt;test&gt; &amp; report" in html  # escaped
    top1 = report.metrics.summary()["top1_accuracy"]
    assert f"{100 * top1:.1f}%" in html


def test_json_carries_the_same_numbers(
    digits: ImageDataset, digits_mlp: TrainedModel, digits_evaluator: Evaluator, tmp_path: Path
) -> None:
    report = _report(digits, digits_mlp, digits_evaluator)
    paths = report.write(tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["metrics"] == report.metrics.summary()
    assert [r["top1"] for r in data["per_class"]] == report.metrics.top1.tolist()
    assert data["attack"]["queries"] == report.result.queries
    assert data["attack"]["config"]["max_iterations"] == 200
    assert data["per_class"][3]["name"] == "3"
    gallery = Image.open(paths["gallery"])
    assert gallery.size[0] > 10 * 8
    assert np.asarray(gallery).std() > 10
    assert not list(tmp_path.glob(".*.tmp"))
