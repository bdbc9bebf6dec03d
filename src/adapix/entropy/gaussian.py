"""Conditional Gaussian entropy model with snapped parameters.

Training (Balle 2018, Minnen 2018): the rate of y uses y + U(-1/2, 1/2) under N(mu, sigma)
integrated over unit bins; the synthesis sees round(y - mu) + mu with a straight-through gradient.

Coding: mu is snapped to the grid ``mean_step`` (a power of two, so mu_s and q + mu_s are exact in
float32) and sigma to the nearest entry of a fixed log-spaced scale table. The coder sees only

    q   = clamp(round(y - mu_s), -symbol_max, symbol_max - 1)   (integer symbol)
    idx = scale-table index                                      (integer)

and the decoder reconstructs y_hat = q + mu_s, so the reconstruction never depends on how the
coder computes probabilities. Shapes: all tensors (B, C, h, w).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..config import ModelConfig
from .coder import GaussianTable

_SQRT_HALF = math.sqrt(0.5)


def scale_table(cfg: ModelConfig) -> np.ndarray:
    """The fixed log-spaced standard deviations used for coding (float64, scale_levels)."""
    return np.exp(np.linspace(math.log(cfg.scale_min), math.log(cfg.scale_max), cfg.scale_levels))


def gaussian_likelihood(y: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor,
                        scale_min: float) -> torch.Tensor:
    """P(bin of width 1 around y) under N(mu, sigma), float32, lower-bounded by 1e-9."""
    v = (y.float() - mu.float()).abs()
    s = sigma.float().clamp_min(scale_min)
    # P = Phi((0.5 - v)/s) - Phi((-0.5 - v)/s), with v = |y - mu| so both terms sit in the left
    # tail where erfc is accurate.
    upper = 0.5 * torch.special.erfc(-(0.5 - v) / s * _SQRT_HALF)
    lower = 0.5 * torch.special.erfc(-(-0.5 - v) / s * _SQRT_HALF)
    return (upper - lower).clamp_min(1e-9)


def log_scale_bounds(stds: np.ndarray) -> np.ndarray:
    """Midpoints of the log standard deviations: index i covers (bound[i-1], bound[i]]."""
    logs = np.log(np.asarray(stds, dtype=np.float64))
    return (logs[:-1] + logs[1:]) / 2


class SnappedGaussian:
    """Turns float (mu, sigma) into coder integers and back; one object per loaded model."""

    def __init__(self, cfg: ModelConfig, stds: np.ndarray | None = None,
                 log_bounds: np.ndarray | None = None):
        self.cfg = cfg
        self.stds = scale_table(cfg) if stds is None else np.asarray(stds, dtype=np.float64)
        self.log_min = math.log(self.stds[0])
        self.log_step = (math.log(self.stds[-1]) - self.log_min) / (len(self.stds) - 1)
        # Boundaries between table entries in the log domain. Computed once (at export) and
        # stored with the weights, so that decoders never evaluate a transcendental function.
        self.log_bounds = (log_scale_bounds(self.stds) if log_bounds is None
                           else np.asarray(log_bounds, dtype=np.float64))
        self.table = GaussianTable(self.stds, cfg.symbol_max)

    def snap_mean(self, mu: torch.Tensor) -> torch.Tensor:
        """mu -> nearest multiple of mean_step (a power of two: exact in float64)."""
        step = self.cfg.mean_step
        return torch.round(mu.to(torch.float64) / step) * step

    def index_from_log(self, log_sigma: torch.Tensor) -> torch.Tensor:
        """Scale-table index of exp(log_sigma), by comparisons with the stored boundaries."""
        bounds = torch.as_tensor(self.log_bounds)
        return torch.bucketize(log_sigma.to(torch.float64).contiguous(), bounds)

    def scale_index(self, sigma: torch.Tensor) -> torch.Tensor:
        s = sigma.float().clamp(self.stds[0], self.stds[-1])
        idx = torch.round((torch.log(s) - self.log_min) / self.log_step)
        return idx.clamp(0, len(self.stds) - 1).to(torch.int64)

    def symbols(self, y: torch.Tensor, mu_s: torch.Tensor) -> torch.Tensor:
        m = self.cfg.symbol_max
        return torch.round(y.to(torch.float64) - mu_s).clamp(-m, m - 1)

    def bits(self, q: torch.Tensor, idx: torch.Tensor) -> float:
        """Ideal code length (bits) of integer symbols q under the table scales idx."""
        std = torch.as_tensor(self.stds)[idx]
        return float(-torch.log2(gaussian_likelihood(q.double(), torch.zeros_like(std), std,
                                                     0.0).double()).sum())
