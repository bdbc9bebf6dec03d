"""The true rate-distortion cost: the latents coded for real, 8-bit reconstruction on the original
region."""

from __future__ import annotations

import math

import torch

from ..model import AdapixModel, CodingResult, Latents


def stream_bits(result: CodingResult) -> int:
    """Real size of the three coded streams, in bits (container overhead excluded)."""
    s = result.streams
    return 8 * (len(s.model_stream) + len(s.hyper) + len(s.content))


def _crop(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return x[..., : int(hw[0]), : int(hw[1])]


def _lam(model: AdapixModel, t: float) -> float:
    return float(model.lam(torch.tensor([float(t)]))[0])


def _sse255(x_hat: torch.Tensor, x: torch.Tensor, hw: tuple[int, int]) -> float:
    """Mean squared error on the 8-bit scale between 8-bit-rounded crops (what a decoder shows)."""
    a = torch.round(_crop(x_hat, hw).float().clamp(0, 1) * 255)
    b = torch.round(_crop(x, hw).float().clamp(0, 1) * 255)
    return float(((a - b) ** 2).mean())


def rd_cost_of(model: AdapixModel, result: CodingResult, x: torch.Tensor, hw: tuple[int, int],
               t: float, lam: float | None = None) -> float:
    """True RD cost of an already coded result (see :func:`rd_cost_true`); ``lam`` replaces
    lambda(t) (to price a result coded at another quality at the asked one's trade-off)."""
    pixels = int(hw[0]) * int(hw[1])
    lam = _lam(model, t) if lam is None else float(lam)
    return stream_bits(result) / pixels + lam * _sse255(result.x_hat, x, hw)


def rd_cost_true(model: AdapixModel, lat: Latents, t: float, x: torch.Tensor,
                 hw: tuple[int, int], postfilter: bool) -> tuple[float, CodingResult]:
    """True RD cost of coding ``lat``: codes for real with ``model.compress_latents``.

    cost = 8 * bytes(streams) / (H * W) + lambda(t) * 255^2 * MSE, where MSE (on [0, 1]) is that
    of the 8-bit-rounded reconstruction against the 8-bit original on the original region ``hw``
    = (H, W) of the padded ``x`` (1, 3, Hp, Wp). Returns (cost, the CodingResult).
    """
    res = model.compress_latents(lat, t, postfilter)
    return rd_cost_of(model, res, x, hw, t), res


def measure(result: CodingResult, x: torch.Tensor, hw: tuple[int, int]) -> tuple[float, float]:
    """(bpp of the three streams, PSNR in dB of the 8-bit reconstruction) on the region hw."""
    mse = _sse255(result.x_hat, x, hw)
    psnr = float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)
    return stream_bits(result) / (int(hw[0]) * int(hw[1])), psnr
