"""Judge an inversion: the standard leakage metrics of the model inversion literature.

* attack accuracy top-1 / top-5: does the independent evaluation model classify the reconstruction as
  the attacked identity? (Zhang et al. 2020, GMI; chance is 1/classes and 5/classes)
* KNN distance: squared distance, in the evaluation model's penultimate features, from the
  reconstruction to the nearest private training image of that identity (Chen et al. 2021)
* SSIM and PSNR to the most similar private training image of the identity
* the target's own confidence in the class, and the feature-space check "closer to its own identity's
  centroid than to the average other identity's"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from invguard.attacks.base import AttackResult
from invguard.data.base import ImageDataset
from invguard.errors import InvalidParameterError
from invguard.metrics.classification import knn_distance, own_vs_other_distance, topk_hits
from invguard.metrics.image import psnr, ssim
from invguard.models.architectures import FeatureClassifier


class Evaluator:
    """The independent evaluation model, wrapped for batched logits and penultimate features."""

    def __init__(
        self,
        model: FeatureClassifier,
        *,
        batch_size: int = 256,
        device: str = "cpu",
        num_classes: int | None = None,
    ) -> None:
        self.model = model.eval()
        self.batch_size = batch_size
        self.device = torch.device(device)
        # the first ``num_classes`` logits only (an open-set model's extra "public" class dropped)
        self.num_classes = num_classes

    @torch.no_grad()
    def logits_and_features(self, x: np.ndarray) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        logits, feats = [], []
        for i in range(0, len(x), self.batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[i : i + self.batch_size])).to(self.device)
            f = self.model.embed(xb)
            feats.append(f.float().cpu())
            logits.append(self.model.head(f).float().cpu())
        out = torch.cat(logits)
        if self.num_classes is not None:
            out = out[:, : self.num_classes]
        return out.numpy(), torch.cat(feats).numpy()


@dataclass
class InversionMetrics:
    """Per-class leakage metrics of one attack run; :meth:`summary` gives the means."""

    classes: NDArray[np.int64]
    top1: NDArray[np.bool_]
    top5: NDArray[np.bool_]
    eval_predicted: NDArray[np.int64]
    eval_confidence: NDArray[np.float64]
    knn_distance: NDArray[np.float64]
    nearest_private: NDArray[np.int64]
    own_distance: NDArray[np.float64]
    other_distance: NDArray[np.float64]
    ssim: NDArray[np.float64]
    psnr: NDArray[np.float64]
    target_confidence: NDArray[np.float64]
    num_classes: int

    @property
    def closer_to_own(self) -> NDArray[np.bool_]:
        out: NDArray[np.bool_] = self.own_distance < self.other_distance
        return out

    def summary(self) -> dict[str, float]:
        return {
            "top1_accuracy": float(self.top1.mean()),
            "top5_accuracy": float(self.top5.mean()),
            "chance_top1": 1.0 / self.num_classes,
            "chance_top5": min(5, self.num_classes) / self.num_classes,
            "knn_distance": float(self.knn_distance.mean()),
            "ssim": float(self.ssim.mean()),
            "psnr": float(self.psnr.mean()),
            "target_confidence": float(self.target_confidence.mean()),
            "eval_confidence": float(self.eval_confidence.mean()),
            "closer_to_own_fraction": float(self.closer_to_own.mean()),
        }

    def per_class(self) -> list[dict[str, Any]]:
        return [
            {
                "class": int(self.classes[i]),
                "top1": bool(self.top1[i]),
                "top5": bool(self.top5[i]),
                "eval_predicted": int(self.eval_predicted[i]),
                "eval_confidence": round(float(self.eval_confidence[i]), 6),
                "knn_distance": round(float(self.knn_distance[i]), 6),
                "nearest_private": int(self.nearest_private[i]),
                "ssim": round(float(self.ssim[i]), 6),
                "psnr": round(float(self.psnr[i]), 4),
                "target_confidence": round(float(self.target_confidence[i]), 6),
                "closer_to_own": bool(self.closer_to_own[i]),
            }
            for i in range(len(self.classes))
        ]


def best_similarity(
    recons: np.ndarray, classes: np.ndarray, private_x: np.ndarray, private_y: np.ndarray
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Highest SSIM and highest PSNR of each reconstruction against the private images of its class."""
    pair_r, pair_p = np.nonzero(private_y[None, :] == classes[:, None])
    if len(np.unique(pair_r)) != len(classes):
        raise InvalidParameterError("some attacked classes have no private images to compare with")
    s = ssim(recons[pair_r], private_x[pair_p])
    p = psnr(recons[pair_r], private_x[pair_p])
    best_s = np.full(len(classes), -np.inf)
    best_p = np.full(len(classes), -np.inf)
    np.maximum.at(best_s, pair_r, s)
    np.maximum.at(best_p, pair_r, p)
    return best_s, best_p


def evaluate_inversion(
    result: AttackResult, evaluator: Evaluator, dataset: ImageDataset
) -> InversionMetrics:
    """Measure how much of ``dataset``'s private training images ``result`` recovered."""
    recons, classes = result.reconstructions, result.classes
    if recons.shape[1:] != dataset.x_train.shape[1:]:
        raise InvalidParameterError(
            f"reconstructions have shape {recons.shape[1:]}, the data set's images "
            f"{dataset.x_train.shape[1:]}"
        )
    logits, feats = evaluator.logits_and_features(recons)
    _, private_feats = evaluator.logits_and_features(dataset.x_train)
    probs = torch.softmax(torch.from_numpy(logits).double(), dim=1).numpy()
    knn, nearest = knn_distance(feats, classes, private_feats, dataset.y_train)
    own, other = own_vs_other_distance(
        feats, classes, private_feats, dataset.y_train, dataset.num_classes
    )
    best_s, best_p = best_similarity(recons, classes, dataset.x_train, dataset.y_train)
    return InversionMetrics(
        classes=classes,
        top1=topk_hits(logits, classes, 1),
        top5=topk_hits(logits, classes, 5),
        eval_predicted=logits.argmax(1).astype(np.int64),
        eval_confidence=probs[np.arange(len(classes)), classes],
        knn_distance=knn,
        nearest_private=nearest,
        own_distance=own,
        other_distance=other,
        ssim=best_s,
        psnr=best_p,
        target_confidence=result.target_confidence.astype(np.float64),
        num_classes=dataset.num_classes,
    )
