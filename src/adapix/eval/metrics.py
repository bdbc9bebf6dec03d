"""Distortion metrics on 8-bit RGB images (per image; dataset numbers are means of per-image values).

* :func:`psnr` — PSNR over all three RGB channels, peak 255 (``inf`` for identical images).
* :func:`ms_ssim` — MS-SSIM of ``pytorch_msssim`` (5 scales, Gaussian window 11, data_range 255) on
  float RGB; ``nan`` for images whose smaller side is too small for 5 scales (< 161 pixels).
* :func:`ms_ssim_db` — ``-10 log10(1 - ms_ssim)``, the usual dB scale for plots.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["psnr", "mse", "ms_ssim", "ms_ssim_db", "MS_SSIM_MIN_SIZE"]

# pytorch_msssim asserts min(H, W) > (win_size - 1) * 2 ** (levels - 1) = 10 * 16 = 160.
MS_SSIM_MIN_SIZE = 161


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected HxWx3 RGB images, got {a.shape}")


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error over all pixels and channels (values on the 0..255 scale)."""
    a = np.asarray(a)
    b = np.asarray(b)
    _check_pair(a, b)
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """RGB PSNR in dB of two uint8 ``H x W x 3`` images; ``inf`` if they are identical."""
    m = mse(a, b)
    if m == 0.0:
        return math.inf
    return float(10.0 * math.log10(peak * peak / m))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM (pytorch_msssim, data_range=255) of two uint8 RGB images; ``nan`` if too small."""
    a = np.asarray(a)
    b = np.asarray(b)
    _check_pair(a, b)
    if min(a.shape[0], a.shape[1]) < MS_SSIM_MIN_SIZE:
        return math.nan
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    ta = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].to(torch.float32)
    tb = torch.from_numpy(np.ascontiguousarray(b)).permute(2, 0, 1)[None].to(torch.float32)
    with torch.no_grad():
        value = _ms_ssim(ta, tb, data_range=255.0, size_average=True)
    return float(value.item())


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, ``-10 log10(1 - ms)``; ``inf`` for 1, ``nan`` for nan."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    if value >= 1.0:
        return math.inf
    return float(-10.0 * math.log10(1.0 - value))
