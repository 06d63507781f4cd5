"""Image similarity metrics: SSIM (Wang et al. 2004) and PSNR, batched, as pure functions."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter

from invguard.errors import InvalidParameterError

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    if a.shape != b.shape or a.ndim != 4:
        raise InvalidParameterError(
            f"images must be two (n, channels, height, width) arrays of the same shape, "
            f"got {a.shape} and {b.shape}"
        )
    return a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)


def ssim(a: np.ndarray, b: np.ndarray, *, data_range: float = 1.0) -> NDArray[np.float64]:
    """Mean SSIM of each pair ``(a[i], b[i])``, shape ``(n,)``; channels are averaged.

    Gaussian window (sigma 1.5, truncated at 3.5 sigma: an 11x11 window), population covariances,
    K1 = 0.01, K2 = 0.03, borders of half a window cropped: the settings of Wang et al. (2004) and of
    ``skimage.metrics.structural_similarity(..., gaussian_weights=True, use_sample_covariance=False)``.
    """
    x, y = _check_pair(a, b)
    sig = (0.0, 0.0, SSIM_SIGMA, SSIM_SIGMA)

    def filt(t: NDArray[np.float64]) -> NDArray[np.float64]:
        out: NDArray[np.float64] = gaussian_filter(t, sig, mode="reflect", truncate=SSIM_TRUNCATE)
        return out

    ux, uy = filt(x), filt(y)
    vx = filt(x * x) - ux * ux
    vy = filt(y * y) - uy * uy
    vxy = filt(x * y) - ux * uy
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    h, w = s.shape[-2:]
    if h > 2 * pad and w > 2 * pad:
        s = s[..., pad : h - pad, pad : w - pad]
    result: NDArray[np.float64] = s.mean(axis=(1, 2, 3))
    return result


def psnr(a: np.ndarray, b: np.ndarray, *, data_range: float = 1.0) -> NDArray[np.float64]:
    """Peak signal-to-noise ratio in dB of each pair, shape ``(n,)`` (inf for identical images)."""
    x, y = _check_pair(a, b)
    mse = ((x - y) ** 2).mean(axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        out: NDArray[np.float64] = 10.0 * np.log10(data_range**2 / mse)
    return out
