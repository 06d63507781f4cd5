"""Pixel-structure judge: the private identity of the most structurally similar private image.

Each image is compared by SSIM (Wang et al. 2004) with every private training image, after both are
brought to the same brightness and contrast (per-image standardisation), and a class scores the best
SSIM among its images. No learned features are involved, so adversarial patterns that transfer
between classifiers do not move it; an image must share the photos' local structure (edges, shading,
layout) to score.

The judge abstains (names no identity) when an image's best SSIM stays below ``2x`` the noise floor:
the highest SSIM that any of 40 uniform-noise images reaches against the gallery (about 0.08 on the
AT&T faces, where held-out real photos score 0.2-0.9 with their own identity). Low-amplitude
patterns optimised against a target then do not count as a structural match.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter

from invguard.errors import InvalidParameterError
from invguard.judges.base import FloatArray, best_per_class, check_gallery
from invguard.metrics.image import SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_TRUNCATE

_TARGET_STD = 0.2  # standardised images: mean 0.5, this standard deviation (data range 1)
NOISE_FLOOR_IMAGES = 40
NOISE_FLOOR_SEED = 1_994  # the AT&T faces were taken 1992-1994
FLOOR_FACTOR = 2.0


def standardise(images: np.ndarray) -> NDArray[np.float64]:
    """Per-image zero-mean, fixed-contrast copy (mean 0.5, std 0.2) in float64."""
    x = images.astype(np.float64)
    flat = x.reshape(len(x), -1)
    mean = flat.mean(axis=1).reshape(-1, 1, 1, 1)
    std = flat.std(axis=1).reshape(-1, 1, 1, 1)
    out: NDArray[np.float64] = 0.5 + _TARGET_STD * (x - mean) / np.maximum(std, 1e-6)
    return out


def _filt(t: NDArray[np.float32]) -> NDArray[np.float32]:
    sig = (0.0,) * (t.ndim - 2) + (SSIM_SIGMA, SSIM_SIGMA)
    out: NDArray[np.float32] = gaussian_filter(t, sig, mode="reflect", truncate=SSIM_TRUNCATE)
    return out


def pairwise_ssim(
    queries: np.ndarray, gallery: np.ndarray, *, chunk: int = 8, data_range: float = 1.0
) -> NDArray[np.float64]:
    """SSIM of every (query, gallery) pair, shape ``(n, m)``; channels averaged, borders cropped.

    Gaussian window (sigma 1.5), population statistics, K1 = 0.01, K2 = 0.03 as in
    :func:`invguard.metrics.image.ssim` (float32 here: agrees to 1e-5). The window statistics of each
    image are computed once; only the cross term is per pair, in chunks of ``chunk`` queries.
    """
    if queries.ndim != 4 or gallery.ndim != 4 or queries.shape[1:] != gallery.shape[1:]:
        raise InvalidParameterError(
            f"images must be (n, c, h, w) arrays of one shape, got {queries.shape} and "
            f"{gallery.shape}"
        )
    q = np.ascontiguousarray(queries, dtype=np.float32)
    g = np.ascontiguousarray(gallery, dtype=np.float32)
    uq, ug = _filt(q), _filt(g)
    vq = _filt(q * q) - uq * uq
    vg = _filt(g * g) - ug * ug
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    pad = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    h, w = q.shape[-2:]
    rows = slice(pad, h - pad) if h > 2 * pad else slice(None)
    cols = slice(pad, w - pad) if w > 2 * pad else slice(None)
    out = np.empty((len(q), len(g)))
    for i in range(0, len(q), chunk):
        qs, uqs, vqs = q[i : i + chunk, None], uq[i : i + chunk, None], vq[i : i + chunk, None]
        cov = _filt(qs * g[None]) - uqs * ug[None]
        s = ((2 * uqs * ug[None] + c1) * (2 * cov + c2)) / (
            (uqs * uqs + ug[None] ** 2 + c1) * (vqs + vg[None] + c2)
        )
        out[i : i + chunk] = s[..., rows, cols].mean(axis=(2, 3, 4), dtype=np.float64)
    return out


class PixelStructureJudge:
    """Nearest private training image by SSIM on standardised pixels; a class scores its best SSIM."""

    family = "pixel structure"

    def __init__(
        self,
        gallery_x: np.ndarray,
        gallery_y: np.ndarray,
        num_classes: int,
        *,
        name: str = "pixel-ssim",
    ) -> None:
        if len(gallery_x) != len(gallery_y) or len(gallery_x) == 0:
            raise InvalidParameterError("the pixel judge needs a non-empty gallery with labels")
        labels = check_gallery(gallery_y, num_classes, "pixel")
        self.name = name
        self.num_classes = num_classes
        self._gallery = standardise(gallery_x)
        self._labels = labels
        noise = np.random.default_rng(NOISE_FLOOR_SEED).random(
            (NOISE_FLOOR_IMAGES, *gallery_x.shape[1:]), dtype=np.float32
        )
        self.noise_floor = float(self._class_scores(noise).max())
        self.threshold = FLOOR_FACTOR * self.noise_floor

    def _class_scores(self, images: np.ndarray) -> NDArray[np.float64]:
        return best_per_class(
            pairwise_ssim(standardise(images), self._gallery), self._labels, self.num_classes
        )

    def scores(self, images: FloatArray) -> NDArray[np.float64]:
        """Best SSIM per class; classes below the threshold get -inf (no match: the judge abstains
        for an image whose every class is below it)."""
        s = self._class_scores(images)
        out: NDArray[np.float64] = np.where(s >= self.threshold, s, -np.inf)
        return out

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "description": (
                "nearest private training image by SSIM (Wang et al. 2004, Gaussian window "
                "sigma 1.5) after per-image standardisation of brightness and contrast; "
                f"gallery: {len(self._labels)} private training images; abstains below SSIM "
                f"{self.threshold:.3f} (2x the noise floor {self.noise_floor:.3f}); no learned "
                "features"
            ),
            "threshold": self.threshold,
            "noise_floor": self.noise_floor,
        }
