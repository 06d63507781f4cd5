"""Shared set-up for the benchmark scripts: data, cached reference models, the evaluator."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from invguard.data import ImageDataset, load_att_faces
from invguard.metrics import Evaluator
from invguard.models import (
    ModelCache,
    TrainedModel,
    default_cache_dir,
    train_evaluation_model,
    train_target,
)


def cache() -> ModelCache:
    return ModelCache(Path(os.environ.get("INVGUARD_CACHE_DIR") or default_cache_dir()))


def faces_setup(
    archs: tuple[str, ...] = ("softmax", "mlp"),
) -> tuple[ImageDataset, dict[str, TrainedModel], Evaluator]:
    data = load_att_faces()
    c = cache()
    targets = {a: train_target(data, a, cache=c) for a in archs}
    evaluator = Evaluator(train_evaluation_model(data, cache=c).model)
    return data, targets, evaluator


def table(rows: list[dict[str, object]], columns: list[str]) -> str:
    """A plain-text table (also valid Markdown)."""
    cells = [[str(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |"]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    out += [
        "| " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    return "\n".join(out)


def judged_cells(summary: Mapping[str, Any]) -> dict[str, object]:
    """One judged run's verdict, each judge's top-1 and, on face data, the face detector's rate
    (``Judgement.summary()`` holds it for a panel with a face judge)."""
    cells: dict[str, object] = {"verdict": f"{summary['verdict_top1']:.3f}"}
    cells.update({name: f"{j['top1']:.3f}" for name, j in summary["judges"].items()})
    if "faces_detected" in summary:
        cells["faces detected"] = f"{summary['faces_detected']:.3f}"
    return cells


def judged_row(
    keys: Mapping[str, object], summary: Mapping[str, Any], seconds: float
) -> dict[str, object]:
    """``keys``, the judged cells (:func:`judged_cells`) and the seconds, printed as one line."""
    row: dict[str, object] = {**keys, **judged_cells(summary), "seconds": f"{seconds:.1f}"}
    print("  " + "  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    return row
