"""Classifier judges: an evaluation model trained on the private images, never attacked."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from invguard.judges.base import FloatArray
from invguard.metrics.evaluate import Evaluator


class EvaluationModelJudge:
    """The evaluation model's logits as class scores (the GMI protocol's judge, Zhang et al. 2020)."""

    family = "classifier"

    def __init__(
        self, evaluator: Evaluator, *, name: str = "evaluation-model", info: dict[str, Any]
    ) -> None:
        self.evaluator = evaluator
        self.name = name
        self.num_classes = int(evaluator.model.head.out_features)
        self._info = info

    def scores(self, images: FloatArray) -> NDArray[np.float64]:
        logits, _ = self.evaluator.logits_and_features(images)
        out: NDArray[np.float64] = logits.astype(np.float64)
        return out

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, **self._info}
