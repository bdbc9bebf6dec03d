"""Entropy-model variants for the ablation of the MSP model (docs/ablations.md, "issue 3").

Every variant has the contract of :class:`adapix.entropy.msp.MSPModel`::

    forward(feats, y, rate_mode=None) -> (y_hat, bits)
        feats (B, 2M, h, w)  hyper features h_s(z_hat)
        y     (B, M, h, w)   gained latent
        y_hat (B, M, h, w)   quantised latent, straight-through gradient
        bits  (B,)           -log2 of the likelihoods of y (rate_mode "noise": y + U(-1/2, 1/2);
                             "ste": the actually rounded values; default: noise in training)

and ``steps_at(latent_hw)``: the sequential entropy-decoding steps of y for a latent of that size
(a constant for MSP and the hyperprior, h*w for the serial model; :func:`sequential_steps`).

* :class:`HyperpriorOnly` -- Balle et al., "Variational image compression with a scale
  hyperprior", ICLR 2018, with the mean-and-scale hyperprior of Minnen et al., "Joint
  autoregressive and hierarchical priors for learned image compression", NeurIPS 2018 (their
  "Mean & Scale Hyperprior" baseline): (mu, sigma) = head(feats), one decoding step, no context.
* :class:`SerialContext` -- the joint autoregressive + hierarchical prior of Minnen et al. 2018:
  a 5x5 masked convolution (type "A", PixelCNN: van den Oord et al. 2016) over y_hat gives
  context features c; an entropy-parameter net of 1x1 convolutions maps cat(feats, c) to
  (mu, sigma). The mask makes training parallel; decoding runs position by position in raster
  order (:meth:`SerialContext.decode_serial`), h*w sequential steps.

Quantisation. HyperpriorOnly uses the MSP convention y_hat = mu + round(y - mu). SerialContext
cannot (mu of a position depends on the y_hat of earlier positions, which would make training
serial): as in Minnen et al. 2018 it codes y_hat = round(y) and the predicted mean enters only the
probability of the symbol. Rates use :func:`adapix.entropy.gaussian.gaussian_likelihood` on unit
bins, exactly as MSP's training handler does.

Sizes. Unless given, the hidden widths are chosen so that the number of *effective* parameters
(masked-out taps of the masked convolution not counted) is as close as possible to that of
``MSPModel(cfg)`` -- :func:`entropy_parameter_counts` reports both.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..entropy.gaussian import gaussian_likelihood
from ..entropy.msp import ContextNet, MSPModel

RATE_MODES = ("noise", "ste")


def _rate_mode(module: nn.Module, rate_mode: str | None) -> str:
    mode = rate_mode or ("noise" if module.training else "ste")
    if mode not in RATE_MODES:
        raise ValueError(f"rate_mode must be 'noise' or 'ste', got {mode!r}")
    return mode


def _bits(values: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor,
          scale_min: float) -> torch.Tensor:
    """Bits per sample (B,) of ``values`` (continuous or integer) under N(mu, sigma), unit bins."""
    lik = gaussian_likelihood(values, mu, sigma, scale_min)
    return (-torch.log2(lik)).flatten(1).sum(1)


def _sigma(log_sigma: torch.Tensor) -> torch.Tensor:
    """Same parametrisation as the MSP context nets (``ContextNet.forward``)."""
    return torch.exp(log_sigma.float().clamp(-6.0, 7.0))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def effective_parameters(module: nn.Module) -> int:
    """Parameters that can influence the output: masked-out taps of MaskedConv2d excluded."""
    n = count_parameters(module)
    for m in module.modules():
        if isinstance(m, MaskedConv2d):
            n -= int((m.mask == 0).sum().item()) * m.in_channels * m.out_channels
    return n


def _match_width(count: Callable[[int], int], target: int, lo: int = 4, hi: int = 8192) -> int:
    """The width w in [lo, hi] whose (increasing) parameter count ``count(w)`` is closest to target."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count(mid) <= target:
            lo = mid
        else:
            hi = mid
    return min((lo, hi), key=lambda w: abs(count(w) - target))


# ---- hyperprior only ---------------------------------------------------------------------------

def msp_parameters(cfg: ModelConfig) -> int:
    """Parameters of MSPModel(cfg), counted on the meta device (no memory, no RNG draws)."""
    with torch.device("meta"):
        return count_parameters(MSPModel(cfg))


def _head_count(M: int, hidden: int) -> int:
    """Parameters of ContextNet(2M, hidden, M): 1x1, 3x3, 1x1, 1x1 convolutions with biases."""
    return 10 * hidden * hidden + (4 * M + 3) * hidden + 2 * M


class HyperpriorOnly(nn.Module):
    """(mu, sigma) (B, M, h, w) from the hyper features alone, in one decoding step.

    The head is the project's :class:`ContextNet` (1x1, 3x3, 1x1, 1x1 convolutions, GELU) with
    input feats (B, 2M, h, w); its width defaults to matching MSPModel's parameter count.
    """

    decode_steps = 1

    def __init__(self, cfg: ModelConfig, hidden: int | None = None):
        super().__init__()
        self.cfg = cfg
        target = msp_parameters(cfg)
        self.hidden = hidden or _match_width(lambda h: _head_count(cfg.M, h), target)
        self.head = ContextNet(2 * cfg.M, self.hidden, cfg.M)

    def steps_at(self, latent_hw: tuple[int, int]) -> int:  # noqa: ARG002 - same for any size
        return self.decode_steps

    def forward(self, feats: torch.Tensor, y: torch.Tensor,
                rate_mode: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mode = _rate_mode(self, rate_mode)
        mu, sigma = self.head(feats)
        r = y.float() - mu
        r_hat = r + (torch.round(r) - r).detach()
        rate_in = r + torch.empty_like(r).uniform_(-0.5, 0.5) if mode == "noise" else r_hat
        bits = _bits(rate_in, torch.zeros_like(mu), sigma, self.cfg.scale_min)
        return mu + r_hat, bits


# ---- serial autoregressive context -------------------------------------------------------------

class MaskedConv2d(nn.Conv2d):
    """k x k convolution whose taps at and after the centre (raster order) are zero ("type A").

    Output at (i, j) depends on input positions (i', j') < (i, j) in raster order, all channels.
    """

    def __init__(self, cin: int, cout: int, k: int = 5):
        super().__init__(cin, cout, k, padding=k // 2)
        mask = torch.ones(1, 1, k, k)
        mask[..., k // 2, k // 2:] = 0
        mask[..., k // 2 + 1:, :] = 0
        self.register_buffer("mask", mask, persistent=False)
        with torch.no_grad():
            self.weight.mul_(self.mask)

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.masked_weight().to(x.dtype)
        return F.conv2d(x, w, self.bias.to(x.dtype), padding=self.padding)


def _serial_count(M: int, ctx: int, hidden: int, k: int = 5) -> int:
    causal = (k * k) // 2
    return causal * M * ctx + ctx + (2 * M + ctx) * hidden + hidden + hidden * hidden + hidden \
        + hidden * 2 * M + 2 * M


class SerialContext(nn.Module):
    """Minnen et al. 2018 joint autoregressive + hierarchical prior.

    Data flow (training and evaluation, parallel thanks to the mask)::

        y_hat = round_ste(y)                          (B, M, h, w)
        c     = masked_conv5x5(y_hat)                 (B, ctx_channels, h, w)
        mu, log_sigma = ep(cat(feats, c))             ep: 1x1 convs 2M+ctx -> hidden -> hidden -> 2M

    Decoding (:meth:`decode_serial`) computes c and ep at one position at a time from the part of
    y_hat decoded so far: h*w sequential steps.
    """

    def __init__(self, cfg: ModelConfig, ctx_channels: int | None = None, hidden: int | None = None,
                 kernel: int = 5):
        super().__init__()
        self.cfg = cfg
        M = cfg.M
        self.ctx_channels = ctx_channels or 2 * M  # as in Minnen et al. 2018
        self.kernel = kernel
        target = msp_parameters(cfg)
        self.hidden = hidden or _match_width(
            lambda h: _serial_count(M, self.ctx_channels, h, kernel), target)
        H = self.hidden
        self.context = MaskedConv2d(M, self.ctx_channels, kernel)
        self.ep = nn.Sequential(nn.Conv2d(2 * M + self.ctx_channels, H, 1), nn.GELU(),
                                nn.Conv2d(H, H, 1), nn.GELU(), nn.Conv2d(H, 2 * M, 1))

    def steps_at(self, latent_hw: tuple[int, int]) -> int:
        return int(latent_hw[0]) * int(latent_hw[1])

    def params(self, feats: torch.Tensor, y_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parallel (mu, sigma), each (B, M, h, w), given the whole y_hat (training/evaluation)."""
        c = self.context(y_hat.to(feats.dtype))
        mu, log_sigma = self.ep(torch.cat([feats, c], dim=1)).float().chunk(2, dim=1)
        return mu, _sigma(log_sigma)

    def forward(self, feats: torch.Tensor, y: torch.Tensor,
                rate_mode: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mode = _rate_mode(self, rate_mode)
        yf = y.float()
        y_hat = yf + (torch.round(yf) - yf).detach()
        mu, sigma = self.params(feats, y_hat)
        rate_in = yf + torch.empty_like(yf).uniform_(-0.5, 0.5) if mode == "noise" else y_hat
        return y_hat, _bits(rate_in, mu, sigma, self.cfg.scale_min)

    @torch.no_grad()
    def decode_serial(self, feats: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder order: position by position in raster order, as an entropy decoder must.

        At (i, j): the context comes from the k x k window of the y_hat decoded so far (zeros
        elsewhere, as the convolution's zero padding), (mu, sigma) from ep at that position, then
        the symbol is "decoded" -- taken from round(y), standing in for the range decoder, which
        needs exactly these (mu, sigma). Returns (y_hat, bits) equal to ``forward(feats, y,
        "ste")`` in value (up to float summation order).
        """
        B, M, h, w = y.shape
        k, p = self.kernel, self.kernel // 2
        symbols = torch.round(y.float())
        buf = torch.zeros(B, M, h + 2 * p, w + 2 * p)  # zero-padded y_hat decoded so far
        wk = self.context.masked_weight().float()
        bk = self.context.bias.float()
        layers = [m for m in self.ep if isinstance(m, nn.Conv2d)]
        mats = [(m.weight.float().view(m.out_channels, -1), m.bias.float()) for m in layers]
        f = feats.float()
        mu_all = torch.empty(B, M, h, w)
        sig_all = torch.empty(B, M, h, w)
        for i in range(h):
            for j in range(w):
                window = buf[:, :, i:i + k, j:j + k]
                c = F.conv2d(window, wk, bk).view(B, -1)
                v = torch.cat([f[:, :, i, j], c], dim=1)
                for n, (wm, bm) in enumerate(mats):
                    v = F.linear(v, wm, bm)
                    if n < len(mats) - 1:
                        v = F.gelu(v)
                mu, log_sigma = v.chunk(2, dim=1)
                mu_all[:, :, i, j] = mu
                sig_all[:, :, i, j] = _sigma(log_sigma)
                buf[:, :, i + p, j + p] = symbols[:, :, i, j]
        y_hat = buf[:, :, p:p + h, p:p + w].clone()
        return y_hat, _bits(y_hat, mu_all, sig_all, self.cfg.scale_min)


CONTEXTS = ("msp", "hyperprior", "serial")


def sequential_steps(entropy_model: nn.Module, latent_hw: tuple[int, int]) -> int:
    """Sequential decoding steps of y for any variant, MSPModel included (its decode_steps)."""
    if isinstance(entropy_model, MSPModel):
        return entropy_model.decode_steps
    return entropy_model.steps_at(latent_hw)


def build_entropy_model(cfg: ModelConfig, context: str) -> nn.Module:
    """The entropy model of y for ``context`` in CONTEXTS."""
    if context == "msp":
        return MSPModel(cfg)
    if context == "hyperprior":
        return HyperpriorOnly(cfg)
    if context == "serial":
        return SerialContext(cfg)
    raise ValueError(f"unknown context model {context!r} (choose from {', '.join(CONTEXTS)})")


def entropy_parameter_counts(cfg: ModelConfig) -> dict[str, tuple[int, int]]:
    """{context: (parameters, effective parameters)} of each variant for ``cfg``."""
    out = {}
    for name in CONTEXTS:
        m = build_entropy_model(cfg, name)
        out[name] = (count_parameters(m), effective_parameters(m))
    return out


__all__ = ["HyperpriorOnly", "SerialContext", "MaskedConv2d", "CONTEXTS", "build_entropy_model",
           "entropy_parameter_counts", "count_parameters", "effective_parameters",
           "msp_parameters", "sequential_steps"]
