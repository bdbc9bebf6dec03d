"""The differentiable proxy of the RD cost (relaxed rounding: STE, noise, SGA) and the helpers of
gradient optimisation."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F

from ..entropy.factorized import FactorizedPrior, round_ste
from ..entropy.gaussian import gaussian_likelihood
from ..entropy.msp import Step
from ..model import AdapixModel, Latents
from .cost import _crop, _lam


def sga_round(x: torch.Tensor, tau: float) -> torch.Tensor:
    """Stochastic Gumbel annealing (Yang et al. 2020): a soft, random choice between floor(x) and
    floor(x) + 1, with logits -atanh(distance) / tau; tends to hard rounding as tau -> 0."""
    eps = 1e-5
    fl = torch.floor(x).detach()
    d_fl = (x - fl).clamp(eps, 1 - eps)
    d_ce = (fl + 1 - x).clamp(eps, 1 - eps)
    logits = torch.stack([-torch.atanh(d_fl), -torch.atanh(d_ce)], dim=-1) / tau
    w = F.gumbel_softmax(logits, tau=tau, hard=False, dim=-1)
    return fl + w[..., 1]


def _relax(v: torch.Tensor, mode: str, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(value seen by the decoder path, value whose likelihood is the rate)."""
    if mode == "sga":
        soft = sga_round(v, tau)
        return soft, soft
    hard = round_ste(v)
    if mode == "noise":
        return hard, v + torch.empty_like(v).uniform_(-0.5, 0.5)
    return hard, hard


def _factorized_bits(prior: FactorizedPrior, v: torch.Tensor) -> torch.Tensor:
    return -torch.log2(prior.likelihood(v)).sum()


def _msp_sga(model: AdapixModel, feats: torch.Tensor, y: torch.Tensor,
             tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """MSP pass with SGA-relaxed rounding around the predicted means (same loop as coding)."""
    bits = torch.zeros((), device=y.device)
    scale_min = model.cfg.scale_min

    def handler(step: Step, y_part, mu, sigma):
        nonlocal bits
        r = sga_round(y_part.float() - mu, tau)
        lik = gaussian_likelihood(r, torch.zeros_like(mu), sigma, scale_min)
        bits = bits - torch.log2(lik).sum()
        return mu + r

    y_hat = model.msp.run(feats, y, handler)
    return y_hat, bits


def proxy_loss(model: AdapixModel, lat: Latents, t: float, x: torch.Tensor, hw: tuple[int, int],
               postfilter: bool, rate_mode: str = "ste", tau: float = 0.5,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Differentiable RD cost of latents: (loss, bpp, mse) with loss = bpp + lambda*255^2*mse.

    bits = bits_y + bits_z + bits_s (ideal code lengths), bpp over the H*W pixels of ``hw``, MSE
    of the float reconstruction cropped to ``hw`` against x cropped.
    """
    tt = torch.tensor([float(t)])
    z_hat, z_rate = _relax(lat.z, rate_mode, tau)
    s_hat, s_rate = _relax(lat.s, rate_mode, tau)
    bits = _factorized_bits(model.z_prior, z_rate) + _factorized_bits(
        model.s_prior, s_rate.unsqueeze(-1))
    feats = model.h_s(z_hat)
    if rate_mode == "sga":
        y_hat, bits_y = _msp_sga(model, feats, lat.y, tau)
    else:
        y_hat, bits_y = model.msp(feats, lat.y, rate_mode=rate_mode)
        bits_y = bits_y.sum()
    x_hat = model.synthesize(y_hat, s_hat, tt, postfilter)
    pixels = int(hw[0]) * int(hw[1])
    bpp = (bits + bits_y) / pixels
    mse = ((_crop(x_hat, hw).float() - _crop(x, hw).float()) ** 2).mean()
    return bpp + _lam(model, t) * 255.0 ** 2 * mse, bpp, mse


@contextmanager
def _frozen(model: AdapixModel) -> Iterator[None]:
    """Model weights without gradients (restored afterwards); autograd on."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with torch.enable_grad():
            yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)


def _detach(lat: Latents) -> Latents:
    return Latents(y=lat.y.detach().clone(), z=lat.z.detach().clone(), s=lat.s.detach().clone())
