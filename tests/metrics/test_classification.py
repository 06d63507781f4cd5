from __future__ import annotations

import numpy as np

from invguard.metrics import knn_distance, own_vs_other_distance, topk_hits


def test_topk_hits() -> None:
    logits = np.array([[0.1, 0.5, 0.4], [3.0, 2.0, 1.0], [0.0, 0.0, 1.0]])
    labels = np.array([1, 2, 2])
    assert topk_hits(logits, labels, 1).tolist() == [True, False, True]
    assert topk_hits(logits, labels, 2).tolist() == [True, False, True]
    assert topk_hits(logits, labels, 3).tolist() == [True, True, True]
    assert topk_hits(logits, labels, 50).all()


def test_knn_distance_picks_the_nearest_image_of_the_same_class() -> None:
    private = np.array([[0.0, 0.0], [10.0, 0.0], [1.0, 1.0], [0.5, 0.0]])
    labels = np.array([0, 0, 1, 1])
    recon = np.array([[0.4, 0.0], [0.4, 0.0]])
    d, idx = knn_distance(recon, np.array([0, 1]), private, labels)
    assert idx.tolist() == [0, 3]
    assert np.allclose(d, [0.16, 0.01])


def test_own_vs_other_uses_class_centroids() -> None:
    private = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    labels = np.array([0, 0, 1, 2])
    own, other = own_vs_other_distance(np.array([[1.0, 0.0]]), np.array([0]), private, labels, 3)
    assert np.allclose(own, [0.0])
    assert np.allclose(other, [(81.0 + 101.0) / 2])
