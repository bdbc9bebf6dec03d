"""The differentiable proxy of the RD cost (relaxed rounding: STE, noise, SGA) and the helpers of
gradient optimisation.

Speed (issue 5): in one gradient iteration on a 768x512 image the synthesis transform g_s takes
about 85% of the time (forward + backward to y; the MSP context nets and h_s are small, the
latents are 1/16 of the resolution). :class:`ProxySynthesis` runs g_s for the *proxy* only in
bfloat16, channels_last, with the GDN parameters reparametrised once per optimisation instead of
every call: on a CPU with AMX/AVX512-BF16 this is ~6x faster than the float32 module, with a
gradient that agrees with float32's to a cosine of 0.9995. On a CPU without native bf16 (AVX2)
it runs in float32, channels_last, with the last transposed convolution as a 3x3 convolution +
pixel shuffle (``"fp32cl"``): forward 1.7x and forward + backward 1.3x faster than the module on
session 5's AVX2 EPYC, 2 threads, 768x512 (``python scripts/tune_profiles.py --bench-iteration
--threads 2``). The true cost, the coding and the
reconstruction that goes into the file never use it: they run ``model.compress_latents``
(float32 synthesis, fixed-point entropy parameters) exactly as without optimisation.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..entropy.factorized import FactorizedPrior, round_ste
from ..entropy.gaussian import gaussian_likelihood
from ..entropy.msp import Step
from ..hardware import bf16_is_fast
from ..layers import GDN, ResidualBlock
from ..model import AdapixModel, Latents
from ..transforms import blocks_after
from .cost import _crop, _lam
from .presets import PRECISIONS


def _subpixel_taps() -> torch.Tensor:
    """(2, 2, 3, 3) index into a flattened 5x5 kernel (25 = a zero tap), see subpixel_weight."""
    idx = torch.full((2, 2, 3, 3), 25, dtype=torch.long)
    for a in range(2):
        for b in range(2):
            for di in range(3):
                for dj in range(3):
                    ki, kj = 2 + a - 2 * (di - 1), 2 + b - 2 * (dj - 1)
                    if 0 <= ki < 5 and 0 <= kj < 5:
                        idx[a, b, di, dj] = 5 * ki + kj
    return idx


_TAPS = _subpixel_taps()


def subpixel_weight(w: torch.Tensor) -> torch.Tensor:
    """The 3x3 convolution weight (4 Cout, Cin, 3, 3) that, followed by ``pixel_shuffle(., 2)``,
    computes ``conv_transpose2d(., w, stride=2, padding=2, output_padding=1)`` for a 5x5 weight
    w (Cin, Cout, 5, 5): output phase (a, b) of pixel (i, j) reads input (i + di, j + dj),
    di, dj in {-1, 0, 1}, with tap w[2 + a - 2 di, 2 + b - 2 dj] (0 outside the kernel).
    Differentiable in w (a gather)."""
    cin, cout = w.shape[:2]
    flat = torch.cat([w.reshape(cin, cout, 25), w.new_zeros(cin, cout, 1)], dim=2)
    taps = flat[:, :, _TAPS]  # (Cin, Cout, 2, 2, 3, 3)
    return taps.permute(1, 2, 3, 0, 4, 5).reshape(4 * cout, cin, 3, 3)


def _check_covered(g_s: nn.Module, used: list[nn.Module]) -> None:
    """TypeError unless the modules the proxy rebuilds hold every parameter of g_s: a part added
    to :class:`adapix.transforms.SynthesisTransform` must be added here too, or the proxy
    optimises for another decoder (as it did for the residual blocks until 4427566)."""
    covered = {id(p) for m in used for p in m.parameters()}
    missing = [name for name, p in g_s.named_parameters() if id(p) not in covered]
    if missing:
        raise TypeError(f"ProxySynthesis does not run g_s.{missing[0]} "
                        f"({len(missing)} parameters of g_s missing)")


class ProxySynthesis:
    """The synthesis seen by the differentiable proxy: ``model.synthesize`` at quality position
    ``t`` for one image (batch 1), with frozen weights.

    ``precision``: ``"fp32"`` calls ``model.synthesize`` itself; ``"bf16"`` runs g_s (with its
    residual blocks, ``model.synthesis_blocks``) in bfloat16 and channels_last from weights
    converted once (GDN's reparametrisation done once;
    the post-filter, if any, and the weight generator stay float32); ``"fp32cl"`` does the same
    in float32, with the last layer as a sub-pixel convolution (:func:`subpixel_weight`);
    ``"auto"`` is bf16 when the CPU has native bf16 kernels, else fp32cl. Call with
    (y_hat (1, M, h, w), s_hat (1, D)) -> x_hat (1, 3, 16h, 16w) float32, differentiable in both.
    """

    def __init__(self, model: AdapixModel, t: float, postfilter: bool, precision: str = "auto"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "auto":
            precision = "bf16" if bf16_is_fast() else "fp32cl"
        self.model, self.postfilter, self.precision = model, postfilter, precision
        self.tt = torch.tensor([float(t)])
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self.layers: list[tuple] = []
        if precision == "fp32":
            return
        cl, dt = torch.channels_last, self.dtype
        with torch.no_grad():
            self.inv_gain = model._interp(model.log_inv_gain, self.tt).float()
            rate_mods = model.synthesis_mods(self.tt)
            g_s = model.g_s
            after = blocks_after(g_s) or {}
            for i, mod in enumerate(g_s.body):
                if isinstance(mod, GDN) and rate_mods is not None:  # ratecond.modulate, at t
                    k = sum(layer[0] == "gdn" for layer in self.layers)
                    scale, shift = (m[0, k].view(1, -1, 1, 1).to(dt) for m in rate_mods)
                    self.layers.append(("affine", scale, shift))
                if isinstance(mod, nn.ConvTranspose2d):
                    self.layers.append(("deconv", mod.weight.detach().to(dt).contiguous(
                        memory_format=cl), mod.bias.detach().to(dt), mod.stride, mod.padding,
                        mod.output_padding))
                elif isinstance(mod, GDN):
                    beta, gamma = mod.effective_params()
                    c = gamma.shape[0]
                    self.layers.append(("gdn", gamma.view(c, c, 1, 1).to(dt).contiguous(
                        memory_format=cl), beta.to(dt), mod.inverse))
                else:  # pragma: no cover - a synthesis this class does not know
                    raise TypeError(f"ProxySynthesis: unsupported layer {type(mod).__name__}")
                for block in after.get(i, ()):  # model.synthesis_blocks: x + c2(lrelu(c1(x)))
                    self.layers.append(("block", *(
                        (c.weight.detach().to(dt).contiguous(memory_format=cl),
                         c.bias.detach().to(dt)) for c in (block.c1, block.c2))))
            head = [] if g_s.head is None else [g_s.head]  # run as a module (FullResHead)
            _check_covered(g_s, [*g_s.body, *after.values(), g_s.last, *head])

    def __call__(self, y_hat: torch.Tensor, s_hat: torch.Tensor) -> torch.Tensor:
        m = self.model
        if self.precision == "fp32":
            return m.synthesize(y_hat, s_hat, self.tt, self.postfilter)
        gen = m.generator(s_hat.float())
        h = (y_hat.float() * self.inv_gain).to(self.dtype).contiguous(
            memory_format=torch.channels_last)
        for layer in self.layers:
            if layer[0] == "deconv":
                _, w, b, stride, padding, out_pad = layer
                h = F.conv_transpose2d(h, w, b, stride=stride, padding=padding,
                                       output_padding=out_pad)
            elif layer[0] == "affine":
                h = h * layer[1] + layer[2]
            elif layer[0] == "block":
                (w1, b1), (w2, b2) = layer[1], layer[2]
                h = h + F.conv2d(F.leaky_relu(F.conv2d(h, w1, b1, padding=1),
                                              ResidualBlock.SLOPE), w2, b2, padding=1)
            else:
                # GDN: beta > 0 and gamma >= 0, so the norm is positive: no clamp needed
                _, gamma, beta, inverse = layer
                norm = F.conv2d(h * h, gamma, beta)
                h = h * torch.sqrt(norm) if inverse else h * torch.rsqrt(norm)
        last = m.g_s.last
        w = last.weight + gen.synthesis_delta[0]
        if self.precision == "fp32cl":  # a 3x3 convolution + pixel shuffle (faster than convT)
            w = subpixel_weight(w).contiguous(memory_format=torch.channels_last)
            x_hat = F.pixel_shuffle(F.conv2d(h, w, last.bias.repeat_interleave(4), padding=1), 2)
        else:
            w = w.to(self.dtype).contiguous(memory_format=torch.channels_last)
            x_hat = F.conv_transpose2d(h, w, last.bias.to(self.dtype), stride=last.stride,
                                       padding=last.padding, output_padding=last.output_padding)
        if m.g_s.head is not None:  # model.synthesis_head, in the proxy's precision
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                x_hat = x_hat.float() + m.g_s.head(h).float()
        x_hat = x_hat.float().contiguous()
        if self.postfilter:
            x_hat = m.postfilter(x_hat, gen)
        return x_hat


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
               synthesis: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
               hyper: tuple[torch.Tensor, torch.Tensor] | None = None,
               lam: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Differentiable RD cost of latents: (loss, bpp, mse) with loss = bpp + lambda*255^2*mse.

    bits = bits_y + bits_z + bits_s (ideal code lengths), bpp over the H*W pixels of ``hw``, MSE
    of the float reconstruction cropped to ``hw`` against x cropped.

    ``synthesis(y_hat, s_hat)`` replaces ``model.synthesize`` (e.g. a :class:`ProxySynthesis`).
    ``hyper`` = (bits_z, h_s(z_hat)) precomputed, for when z does not move (``lat.z`` is then
    not used): saves h_s and its backward pass in every iteration. ``lam`` replaces lambda(t)
    (the trade-off of the asked quality when the image is coded at another one).
    """
    tt = torch.tensor([float(t)])
    s_hat, s_rate = _relax(lat.s, rate_mode, tau)
    bits = _factorized_bits(model.s_prior, s_rate.unsqueeze(-1))
    if hyper is None:
        z_hat, z_rate = _relax(lat.z, rate_mode, tau)
        bits = bits + _factorized_bits(model.z_prior, z_rate)
        feats = model.h_s(z_hat)
    else:
        bits = bits + hyper[0]
        feats = hyper[1]
    if rate_mode == "sga":
        y_hat, bits_y = _msp_sga(model, feats, lat.y, tau)
    else:
        y_hat, bits_y = model.msp(feats, lat.y, rate_mode=rate_mode)
        bits_y = bits_y.sum()
    if synthesis is None:
        x_hat = model.synthesize(y_hat, s_hat, tt, postfilter)
    else:
        x_hat = synthesis(y_hat, s_hat)
    pixels = int(hw[0]) * int(hw[1])
    bpp = (bits + bits_y) / pixels
    mse = ((_crop(x_hat, hw).float() - _crop(x, hw).float()) ** 2).mean()
    lam = _lam(model, t) if lam is None else float(lam)
    return bpp + lam * 255.0 ** 2 * mse, bpp, mse


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
