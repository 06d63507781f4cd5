"""The judge contract: a judge scores images against the private classes; votes follow from ranks.

A judge answers one question for each image: which private identity does it show? It returns a
score per class (higher: more like that class). :func:`votes` turns scores into the per-image
top-1/top-5 decisions that the verdict combines. Judges of different families (a classifier, a face
embedding, pixel structure) fail in different ways, which is why a verdict needs more than one
(Ho et al. 2025, "Uncovering the limitations of model inversion evaluation").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from invguard.errors import InvalidParameterError

FloatArray = NDArray[np.float32]


@runtime_checkable
class Judge(Protocol):
    """Scores images of shape ``(n, c, h, w)`` in [0, 1] against ``num_classes`` private identities."""

    name: str
    family: str
    num_classes: int

    def scores(self, images: FloatArray) -> NDArray[np.float64]:
        """``(n, num_classes)`` scores; higher means more like that class."""
        ...

    def info(self) -> dict[str, Any]:
        """JSON-ready description for reports (what it is, what it was built from)."""
        ...


@dataclass
class JudgeVotes:
    """One judge's decisions on one image set: predicted class and the rank of the true class."""

    judge: str
    classes: NDArray[np.int64]
    predicted: NDArray[np.int64]
    rank: NDArray[np.int64]  # 0: the true class scored highest; num_classes: the judge abstained
    num_classes: int

    @property
    def top1(self) -> NDArray[np.bool_]:
        out: NDArray[np.bool_] = self.rank < 1
        return out

    @property
    def top5(self) -> NDArray[np.bool_]:
        out: NDArray[np.bool_] = self.rank < min(5, self.num_classes)
        return out

    def summary(self) -> dict[str, float]:
        return {"top1": float(self.top1.mean()), "top5": float(self.top5.mean())}


def votes(judge: str, scores: np.ndarray, classes: np.ndarray) -> JudgeVotes:
    """Ranks of ``classes`` in ``scores`` (ties count against the true class), batched.

    A score of -inf means "not this class"; an image whose true class scores -inf is a miss
    (rank ``num_classes``), and one whose every class scores -inf has no prediction (-1).
    """
    if scores.ndim != 2 or scores.shape[0] != len(classes):
        raise InvalidParameterError(
            f"judge '{judge}' returned scores of shape {scores.shape} for {len(classes)} images"
        )
    cls = np.asarray(classes, dtype=np.int64)
    s = np.where(np.isfinite(scores), scores, -np.inf)
    own = s[np.arange(len(cls)), cls]
    rank = (s >= own[:, None]).sum(axis=1) - 1  # classes scoring at least as high, minus itself
    rank = np.where(np.isneginf(own), scores.shape[1], rank)
    predicted = np.where(np.isneginf(s).all(axis=1), -1, s.argmax(axis=1))
    return JudgeVotes(
        judge=judge,
        classes=cls,
        predicted=predicted.astype(np.int64),
        rank=rank.astype(np.int64),
        num_classes=int(scores.shape[1]),
    )


def check_gallery(labels: np.ndarray, num_classes: int, judge: str) -> NDArray[np.int64]:
    """Gallery labels as int64; every class must have at least one image."""
    lab = np.asarray(labels, dtype=np.int64)
    missing = sorted(set(range(num_classes)) - set(np.unique(lab).tolist()))
    if len(lab) == 0 or missing:
        first = missing[0] if missing else 0
        raise InvalidParameterError(f"the {judge} judge's gallery has no images of class {first}")
    return lab


def best_per_class(
    similarity: np.ndarray, labels: NDArray[np.int64], num_classes: int
) -> NDArray[np.float64]:
    """``(n, num_classes)``: each query's highest similarity among the gallery images of a class."""
    out = np.full((similarity.shape[0], num_classes), -np.inf)
    for k in range(num_classes):  # one column per class: a reduction, not a sample loop
        out[:, k] = similarity[:, labels == k].max(axis=1)
    return out
