"""The report of one inversion run: HTML (self-contained, images inline), JSON, and a gallery PNG."""

from __future__ import annotations

import io
import json
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from invguard import __version__
from invguard.attacks.base import AttackResult
from invguard.data.base import ImageDataset
from invguard.judges.evaluate import Judgement
from invguard.metrics.evaluate import InversionMetrics
from invguard.report.images import data_uri, gallery_grid, png_bytes
from invguard.report.io import write_atomic
from invguard.report.templating import render

REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
GALLERY_PNG = "gallery.png"
RECONSTRUCTIONS_NPZ = "reconstructions.npz"


@dataclass
class InversionReport:
    """Everything a reader needs to judge one inversion run."""

    title: str
    dataset: ImageDataset
    target: dict[str, Any]
    evaluator: dict[str, Any]
    result: AttackResult
    metrics: InversionMetrics
    judgement: Judgement | None = None
    dataset_source: str | None = None  # a built-in data set name, for `invguard review`
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def nearest_private_images(self) -> np.ndarray:
        return self.dataset.x_train[self.metrics.nearest_private]

    def to_dict(self) -> dict[str, Any]:
        """The report's numbers as JSON-ready data (no images)."""
        names = self.dataset.class_names
        per_class = self.metrics.per_class()
        for row in per_class:
            row["name"] = names[row["class"]]
            row["eval_predicted_name"] = names[row["eval_predicted"]]
        if self.judgement is not None:
            for row, extra in zip(per_class, self.judgement.per_class(), strict=True):
                for jv in extra["judges"].values():
                    jv["predicted_name"] = names[jv["predicted"]] if jv["predicted"] >= 0 else "-"
                row.update(extra)
        out = {
            "schema": "invguard.inversion-report/1",
            "title": self.title,
            "created": self.created,
            "invguard_version": __version__,
            "environment": {
                "python": platform.python_version(),
                "platform": platform.platform(terse=True),
            },
            "dataset": {
                "name": self.dataset.name,
                "description": self.dataset.description,
                "num_classes": self.dataset.num_classes,
                "image_shape": list(self.dataset.image_shape),
                "train_images": len(self.dataset.y_train),
                "test_images": len(self.dataset.y_test),
                "source": self.dataset_source,
            },
            "target": {"name": "target", "source": "", "test_accuracy": None, **self.target},
            "evaluator": self.evaluator,
            "attack": self.result.summary(),
            "metrics": self.metrics.summary(),
            "per_class": per_class,
        }
        if self.judgement is not None:
            out["judgement"] = self.judgement.summary()
        return out

    def gallery_png(self, *, columns: int = 10, scale: int = 2) -> bytes:
        grid = gallery_grid(
            self.result.reconstructions,
            self.nearest_private_images(),
            columns=columns,
            scale=scale,
        )
        return png_bytes(grid)

    def to_html(self) -> str:
        data = self.to_dict()
        recon_scale = max(1, 112 // max(1, self.dataset.image_shape[1]))
        nearest = self.nearest_private_images()
        cards = []
        for i, row in enumerate(data["per_class"]):
            cards.append(
                {
                    **row,
                    "recon_uri": data_uri(
                        png_bytes(self.result.reconstructions[i], scale=recon_scale)
                    ),
                    "private_uri": data_uri(png_bytes(nearest[i], scale=recon_scale)),
                }
            )
        return render(
            "inversion.html",
            report=data,
            judgement=data.get("judgement"),
            cards=cards,
            config_json=json.dumps(data["attack"]["config"], indent=2, sort_keys=True),
        )

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``report.html``, ``report.json`` and ``gallery.png`` into ``out_dir`` atomically."""
        out = Path(out_dir)
        html = self.to_html()
        body = json.dumps(self.to_dict(), indent=2, sort_keys=False)
        gallery = self.gallery_png()
        buf = io.BytesIO()
        np.savez(buf, x=self.result.reconstructions, classes=self.result.classes)
        return {
            "reconstructions": write_atomic(out / RECONSTRUCTIONS_NPZ, buf.getvalue()),
            "json": write_atomic(out / REPORT_JSON, body + "\n"),
            "gallery": write_atomic(out / GALLERY_PNG, gallery),
            "html": write_atomic(out / REPORT_HTML, html),
        }
