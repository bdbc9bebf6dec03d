from __future__ import annotations

import math

import numpy as np
import pytest

from adapix.eval.metrics import MS_SSIM_MIN_SIZE, ms_ssim, ms_ssim_db, mse, psnr


def test_psnr_known_value():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[..., 0] = 3  # squared error 9 on a third of the samples -> MSE 3
    assert mse(a, b) == pytest.approx(3.0)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 3.0))
    assert psnr(a, a) == math.inf


def test_psnr_shape_mismatch():
    with pytest.raises(ValueError):
        psnr(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))


def test_ms_ssim_small_images_are_nan(make_image):
    img = make_image(64, 64)
    assert math.isnan(ms_ssim(img, img))


def test_ms_ssim_values(make_image):
    s = MS_SSIM_MIN_SIZE
    img = make_image(s, s + 8, seed=1)
    assert ms_ssim(img, img) == pytest.approx(1.0, abs=1e-5)
    noisy = np.clip(img.astype(int) + np.random.default_rng(0).integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
    v = ms_ssim(img, noisy)
    assert 0.5 < v < 1.0
    assert ms_ssim_db(v) == pytest.approx(-10 * math.log10(1 - v))
    assert math.isnan(ms_ssim_db(math.nan))
    assert ms_ssim_db(1.0) == math.inf
