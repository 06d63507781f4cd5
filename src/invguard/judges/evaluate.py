"""Judge one attack run: every judge, the calibration rows, reliability flags and the verdict.

:func:`judge_images` is the one place where reconstructions meet the judges; the demo, ``attack``,
``judge``, the assessment jobs and the defence evaluation all call it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from invguard.data.base import ImageDataset
from invguard.judges.base import FloatArray, JudgeVotes
from invguard.judges.calibration import (
    CALIBRATION_ROWS,
    CalibrationSet,
    calibration_set,
    fresh_gradient_view,
    reliability,
)
from invguard.judges.face_embedding import FaceEmbeddingJudge
from invguard.judges.panel import VERDICT_RULE, JudgePanel, PanelJudgement, agreement, combine
from invguard.metrics.evaluate import InversionMetrics
from invguard.metrics.intervals import wilson_interval
from invguard.targets.base import GradientTarget, Target

CALIBRATION_SEED = 20_150_101  # calibration noise is the same in every run, so rows compare
RECONSTRUCTIONS = "reconstructions"
FACES_NOTE = (
    "share of images in which dlib's HOG face detector finds a face: a naturalness check that "
    "knows no identity and does not vote (real photos about 1.0, noise 0.0)"
)


def face_detector(panel: JudgePanel) -> FaceEmbeddingJudge | None:
    """The panel's face-embedding judge, when it judges faces (so dlib is installed): the
    judgement then also reports the face detector's rate of every image set (it does not vote)."""
    for judge in panel.judges:
        inner = getattr(judge, "inner", judge)  # an open-set judge wraps the face embedding
        if isinstance(inner, FaceEmbeddingJudge):
            return inner
    return None


@dataclass
class Judgement:
    """All judges on the reconstructions and on the calibration rows, and the verdict."""

    reconstructions: PanelJudgement
    calibration: dict[str, PanelJudgement]
    reliability: dict[str, dict[str, Any]]
    judges: list[dict[str, Any]]
    calibration_notes: dict[str, str] = field(default_factory=dict)
    panel_notes: list[str] = field(default_factory=list)
    faces_detected: dict[str, float] = field(default_factory=dict)
    face_found: NDArray[np.bool_] | None = None  # per reconstruction, with faces_detected

    @property
    def unreliable(self) -> list[str]:
        return [j for j, r in self.reliability.items() if r["status"] == "unreliable"]

    def summary(self) -> dict[str, Any]:
        """JSON-ready totals: verdict, each judge, each calibration row (top-1/top-5 per judge)."""
        rec = self.reconstructions
        k = rec.num_classes
        faces = self.faces_detected
        return {
            "rule": VERDICT_RULE,
            "verdict_top1": float(rec.verdict_top1.mean()),
            "verdict_top5": float(rec.verdict_top5.mean()),
            "chance_top1": 1.0 / k,
            "chance_top5": min(5, k) / k,
            "identities": len(rec.classes),
            "identities_reconstructed": int(rec.verdict_top1.sum()),
            "verdict_top1_interval": list(
                wilson_interval(int(rec.verdict_top1.sum()), len(rec.classes))
            ),
            "unanimous_top1": float(
                np.stack([v.top1 for v in rec.votes.values()]).all(axis=0).mean()
            ),
            "voters": list(rec.voters),
            "degraded": rec.degraded,
            "judges": {
                name: {**v.summary(), **self.reliability[name]} for name, v in rec.votes.items()
            },
            "agreement": agreement(rec),
            "calibration": {
                row: {
                    "verdict_top1": float(j.verdict_top1.mean()),
                    "verdict_top5": float(j.verdict_top5.mean()),
                    "judges": {n: v.summary() for n, v in j.votes.items()},
                    "note": self.calibration_notes.get(row, ""),
                    **({"faces_detected": faces[row]} if row in faces else {}),
                }
                for row, j in self.calibration.items()
            },
            "missing_calibration": {
                r: self.calibration_notes[r]
                for r in CALIBRATION_ROWS
                if r not in self.calibration and r in self.calibration_notes
            },
            "judge_info": self.judges,
            "notes": self.panel_notes,
            **(
                {"faces_detected": faces[RECONSTRUCTIONS], "faces_detected_note": FACES_NOTE}
                if RECONSTRUCTIONS in faces
                else {}
            ),
            **({"human": rec.summary()["human_reviewed"]} if rec.human is not None else {}),
        }

    def per_class(self) -> list[dict[str, Any]]:
        rec = self.reconstructions
        agree = rec.agreeing()
        rows = []
        for i, c in enumerate(rec.classes.tolist()):
            row: dict[str, Any] = {
                "class": int(c),
                "verdict_top1": bool(rec.verdict_top1[i]),
                "verdict_top5": bool(rec.verdict_top5[i]),
                "judges_agreeing": int(agree[i]),
                "judges": {
                    n: {"predicted": int(v.predicted[i]), "rank": int(v.rank[i])}
                    for n, v in rec.votes.items()
                },
            }
            if self.face_found is not None:
                row["face_detected"] = bool(self.face_found[i])
            if rec.human is not None and rec.human[i] >= 0:
                row["human"] = "same" if rec.human[i] == 1 else "different"
            rows.append(row)
        return rows


@dataclass
class Calibration:
    """A calibration set scored by a panel, and each judge's reliability for the run."""

    images: CalibrationSet
    votes: dict[str, dict[str, JudgeVotes]]
    reliability: dict[str, dict[str, Any]]
    faces_detected: dict[str, float] = field(default_factory=dict)

    @property
    def unreliable(self) -> list[str]:
        return [n for n, r in self.reliability.items() if r["status"] == "unreliable"]


def calibrate(panel: JudgePanel, images: CalibrationSet) -> Calibration:
    """Score every calibration row with every judge and flag unreliable or weak judges."""
    rows = {r: panel.votes(x, images.classes) for r, x in images.images.items()}
    rel: dict[str, dict[str, Any]] = {}
    for name in panel.names:
        status, evidence = reliability(
            {r: v[name].top1 for r, v in rows.items()}, panel.num_classes
        )
        rel[name] = {"status": status, **evidence}
    detector = face_detector(panel)
    faces = (
        {}
        if detector is None
        else {r: float(detector.detect(x).mean()) for r, x in images.images.items() if len(x)}
    )
    return Calibration(images=images, votes=rows, reliability=rel, faces_detected=faces)


def judge_images(
    panel: JudgePanel,
    images: FloatArray,
    classes: NDArray[np.int64],
    calibration: Calibration | CalibrationSet | None,
    *,
    human: NDArray[np.int8] | None = None,
) -> Judgement:
    """Score ``images`` (one per class in ``classes``) with every judge, beside the calibration rows.

    Pass a :class:`Calibration` from :func:`calibrate` to judge several runs against the same target
    without scoring its calibration rows again.
    """
    if isinstance(calibration, CalibrationSet):
        calibration = calibrate(panel, calibration)
    if calibration is None:
        rel: dict[str, dict[str, Any]] = {n: {"status": "not calibrated"} for n in panel.names}
        unreliable: list[str] = []
        cal: dict[str, PanelJudgement] = {}
        notes: dict[str, str] = {}
        faces: dict[str, float] = {}
    else:
        rel = calibration.reliability
        unreliable = calibration.unreliable
        cal = {
            r: combine(v, calibration.images.classes, unreliable=unreliable)
            for r, v in calibration.votes.items()
        }
        notes = dict(calibration.images.notes)
        faces = dict(calibration.faces_detected)
    detector = face_detector(panel)
    found = detector.detect(images) if detector is not None and len(images) else None
    if found is not None:
        faces[RECONSTRUCTIONS] = float(found.mean())
    rec = combine(panel.votes(images, classes), classes, unreliable=unreliable, human=human)
    return Judgement(
        reconstructions=rec,
        calibration=cal,
        reliability=rel,
        judges=panel.info(),
        calibration_notes=notes,
        panel_notes=list(panel.notes),
        faces_detected=faces,
        face_found=found,
    )


def run_calibration(
    dataset: ImageDataset,
    classes: NDArray[np.int64],
    target: Target | None,
    *,
    surrogate: GradientTarget | None = None,
    surrogate_name: str = "a surrogate",
    public: FloatArray | None = None,
) -> CalibrationSet:
    """Calibration images for a run against ``target`` (artefacts crafted against it if it gives
    gradients, else against ``surrogate``); the noise is the same in every run. With the attacker's
    ``public`` images, the public look-alike row is ranked by the same model."""
    view = fresh_gradient_view(target) if target is not None else None
    if view is not None:
        source, grad_target = "the target itself", view
    elif surrogate is not None:
        source, grad_target = f"{surrogate_name} (the target gives no gradients)", surrogate
    else:
        source, grad_target = "the target gives no gradients and no surrogate was given", None
    return calibration_set(
        dataset,
        classes,
        artefact_target=grad_target,
        artefact_source=source,
        rng=np.random.default_rng(CALIBRATION_SEED),
        public=public,
    )


def judge_run(
    panel: JudgePanel,
    dataset: ImageDataset,
    reconstructions: FloatArray,
    classes: NDArray[np.int64],
    target: Target | None,
    *,
    surrogate: GradientTarget | None = None,
    human: NDArray[np.int8] | None = None,
    public: FloatArray | None = None,
) -> Judgement:
    """Calibrate against ``target`` and judge ``reconstructions``: the usual one-call path."""
    cal = run_calibration(dataset, classes, target, surrogate=surrogate, public=public)
    return judge_images(panel, reconstructions, classes, cal, human=human)


def headline(metrics: InversionMetrics, judgement: Judgement) -> dict[str, Any]:
    """The evaluation-model metrics and the verdict in one flat dict (for tables and findings)."""
    s = judgement.summary()
    return {
        **metrics.summary(),
        "verdict_top1": s["verdict_top1"],
        "verdict_top5": s["verdict_top5"],
        "judges_top1": {n: j["top1"] for n, j in s["judges"].items()},
        "unreliable_judges": judgement.unreliable,
    }
