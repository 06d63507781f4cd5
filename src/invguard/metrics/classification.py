"""Attack accuracy as judged by an evaluation model, and feature-space distances (pure functions)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from invguard.errors import InvalidParameterError


def topk_hits(logits: np.ndarray, labels: np.ndarray, k: int) -> NDArray[np.bool_]:
    """Per sample: is ``labels[i]`` among the ``k`` highest scores of ``logits[i]``?"""
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise InvalidParameterError(
            f"logits must be (n, classes) and labels (n,), got {logits.shape} and {labels.shape}"
        )
    k = min(k, logits.shape[1])
    own = logits[np.arange(len(labels)), labels]
    # Rank = number of classes scoring strictly higher; ties count in the sample's favour.
    rank = (logits > own[:, None]).sum(axis=1)
    hits: NDArray[np.bool_] = rank < k
    return hits


def pairwise_sq_distances(a: np.ndarray, b: np.ndarray) -> NDArray[np.float64]:
    """Squared Euclidean distances between the rows of ``a`` (n, d) and ``b`` (m, d): (n, m)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    d = (a64**2).sum(1)[:, None] + (b64**2).sum(1)[None, :] - 2.0 * a64 @ b64.T
    out: NDArray[np.float64] = np.maximum(d, 0.0)
    return out


def knn_distance(
    recon_features: np.ndarray,
    classes: np.ndarray,
    private_features: np.ndarray,
    private_labels: np.ndarray,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """KNN distance (Chen et al. 2021, "KNN Dist"): for each reconstruction, the squared feature
    distance to the nearest private image of its class, and that image's index into the private set.
    """
    d = pairwise_sq_distances(recon_features, private_features)
    d = np.where(private_labels[None, :] == classes[:, None], d, np.inf)
    if not np.isfinite(d).any(axis=1).all():
        missing = classes[~np.isfinite(d).any(axis=1)]
        raise InvalidParameterError(f"no private images for class {int(missing[0])}")
    nearest = d.argmin(axis=1).astype(np.int64)
    return d[np.arange(len(classes)), nearest], nearest


def own_vs_other_distance(
    recon_features: np.ndarray,
    classes: np.ndarray,
    private_features: np.ndarray,
    private_labels: np.ndarray,
    num_classes: int,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Squared distance of each reconstruction to its own class's feature centroid, and the mean of
    its squared distances to every other class's centroid."""
    dim = private_features.shape[1]
    centroids = np.zeros((num_classes, dim))
    counts = np.bincount(private_labels, minlength=num_classes)
    np.add.at(centroids, private_labels, private_features.astype(np.float64))
    present = counts > 0
    centroids[present] /= counts[present, None]
    d = pairwise_sq_distances(recon_features, centroids)
    own = d[np.arange(len(classes)), classes]
    mask = present[None, :] & (np.arange(num_classes)[None, :] != classes[:, None])
    other = (d * mask).sum(1) / np.maximum(mask.sum(1), 1)
    return own, other
