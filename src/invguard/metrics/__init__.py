"""Leakage metrics: pure functions over arrays, and the evaluation of an attack run."""

from invguard.metrics.classification import (
    knn_distance,
    own_vs_other_distance,
    pairwise_sq_distances,
    topk_hits,
)
from invguard.metrics.evaluate import (
    Evaluator,
    InversionMetrics,
    best_similarity,
    evaluate_inversion,
)
from invguard.metrics.image import psnr, ssim
from invguard.metrics.intervals import wilson_interval

__all__ = [
    "Evaluator",
    "InversionMetrics",
    "best_similarity",
    "evaluate_inversion",
    "knn_distance",
    "own_vs_other_distance",
    "pairwise_sq_distances",
    "psnr",
    "ssim",
    "topk_hits",
    "wilson_interval",
]
