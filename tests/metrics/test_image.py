from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from invguard.errors import InvalidParameterError
from invguard.metrics import psnr, ssim


def test_ssim_matches_scikit_image_gaussian_ssim() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((6, 1, 56, 46))
    b = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1)
    ours = ssim(a, b)
    ref = [
        structural_similarity(  # type: ignore[no-untyped-call]
            a[i, 0],
            b[i, 0],
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for i in range(6)
    ]
    assert np.allclose(ours, ref, atol=1e-6)
    assert np.allclose(ssim(a, a), 1.0)


def test_psnr_matches_scikit_image_and_definition() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((3, 1, 10, 10))
    b = np.clip(a + 0.05, 0, 1)
    ours = psnr(a, b)
    ref = [
        peak_signal_noise_ratio(a[i], b[i], data_range=1.0)  # type: ignore[no-untyped-call]
        for i in range(3)
    ]
    assert np.allclose(ours, ref)
    # uniform error of 0.1 -> MSE 0.01 -> 20 dB
    assert psnr(np.zeros((1, 1, 4, 4)), np.full((1, 1, 4, 4), 0.1))[0] == pytest.approx(20.0)


def test_shape_mismatch_is_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="same shape"):
        ssim(np.zeros((2, 1, 8, 8)), np.zeros((2, 1, 8, 9)))
