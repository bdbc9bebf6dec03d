"""Multi-scale progressive (MSP) entropy model for the latent y.

Idea (multi-scale progressive probability model with latent overfitting, as in the paper Adapix
follows): split y by 2x2 polyphase into scales, code the coarsest scale first and then, scale by
scale, the three remaining phases, each phase in channel groups. Every group gets Gaussian
parameters from a small CNN over everything decoded before it, so the number of sequential steps
is a constant of the model -- ``1 + groups * (1 + 3 * (scales - 1))`` with the hyper step -- not of
the image size.

Scales: y_0 = y (B,M,H,W); y_{k+1} = y_k[..., 0::2, 0::2]. At scale k < S-1 the phase grids are
y_k[..., a::2, b::2] of size (H/2^(k+1), W/2^(k+1)); phase (0,0) is y_{k+1}. Order of phases:
(1,1), (0,1), (1,0). Hyper features f (B,2M,H,W) are sampled at the same positions as the grid
being coded.

One code path for all modes (:meth:`MSPModel.run`): the loop computes the context and the
Gaussian parameters of each step, then hands them to a *handler*:

* training handler: noisy rate, straight-through reconstruction (differentiable);
* coding handler (encode and decode): snaps (mu, sigma) to tables and calls
  ``coder.code(symbols_or_None, scale_index)`` -- a StepEncoder records symbols, a StepDecoder
  returns them -- so encoder and decoder run literally the same lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .gaussian import SnappedGaussian, gaussian_likelihood

PHASES = ((1, 1), (0, 1), (1, 0))  # coding order of the non-(0,0) phases at each scale


@dataclass(frozen=True)
class Step:
    """One sequential decoding step: a channel group of one phase of one scale."""

    scale: int              # 0 = finest; S-1 = coarsest
    phase: tuple[int, int]  # (a, b); (0, 0) only at the coarsest scale
    phase_index: int        # 0 for the coarsest scale, 1..3 for PHASES
    group: int


def _grid(t: torch.Tensor, scale: int, phase: tuple[int, int]) -> torch.Tensor:
    """Positions of ``phase`` at ``scale``: t[..., a*2^k :: 2^(k+1), b*2^k :: 2^(k+1)]."""
    s = 2 ** scale
    return t[..., phase[0] * s:: 2 * s, phase[1] * s:: 2 * s]


def _coarsest(t: torch.Tensor, scales: int) -> torch.Tensor:
    s = 2 ** (scales - 1)
    return t[..., ::s, ::s]


def _interleave(p00, p11, p01, p10) -> torch.Tensor:
    """Inverse of the polyphase split: four (B,C,h,w) grids -> (B,C,2h,2w)."""
    B, C, h, w = p00.shape
    stacked = torch.stack([p00, p01, p10, p11], dim=2).reshape(B, C * 4, h, w)
    return F.pixel_shuffle(stacked, 2)


class ContextNet(nn.Module):
    """Context CNN: (B, cin, h, w) -> (mu, sigma) each (B, cout, h, w)."""

    def __init__(self, cin: int, hidden: int, cout: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(cin, hidden, 1), nn.GELU(),
                                 nn.Conv2d(hidden, hidden, 3, padding=1), nn.GELU(),
                                 nn.Conv2d(hidden, hidden, 1), nn.GELU(),
                                 nn.Conv2d(hidden, 2 * cout, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_sigma = self.net(x).float().chunk(2, dim=1)
        return mu, torch.exp(log_sigma.clamp(-6.0, 7.0))


# handler(step, y_part or None, mu, sigma) -> y_hat_part
Handler = Callable[[Step, "torch.Tensor | None", torch.Tensor, torch.Tensor], torch.Tensor]


class MSPModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.M % cfg.groups:
            raise ValueError("M must be divisible by groups")
        self.cfg = cfg
        M, G, H = cfg.M, cfg.groups, cfg.ctx_hidden
        Mg = M // G
        feat = 2 * M
        self.coarse = nn.ModuleList(ContextNet(feat + g * Mg, H, Mg) for g in range(G))
        self.phase_nets = nn.ModuleList(
            nn.ModuleList(ContextNet(feat + j * M + g * Mg, H, Mg) for g in range(G))
            for j in range(1, 4))

    @property
    def decode_steps(self) -> int:
        """Sequential entropy-decoding steps of y (excludes the hyper/model-stream step)."""
        return self.cfg.groups * (1 + 3 * (self.cfg.scales - 1))

    def steps(self) -> list[Step]:
        S, G = self.cfg.scales, self.cfg.groups
        out = [Step(S - 1, (0, 0), 0, g) for g in range(G)]
        for k in range(S - 2, -1, -1):
            for j, ph in enumerate(PHASES, start=1):
                out += [Step(k, ph, j, g) for g in range(G)]
        return out

    def run(self, feats: torch.Tensor, y: torch.Tensor | None, handler: Handler,
            call: Callable | None = None) -> torch.Tensor:
        """The single MSP loop. feats (B,2M,H,W); y (B,M,H,W) or None (decoding).

        ``call(net, ctx)`` evaluates a context net (default ``net(ctx)``; coding passes the
        fixed-point version). Returns y_hat (B,M,H,W) as produced by the handler, step by step.
        """
        call = call or (lambda net, ctx: net(ctx))
        cfg = self.cfg
        Mg = cfg.M // cfg.groups
        S = cfg.scales

        def group_loop(nets, ctx_prefix, y_grid, k, ph, j):
            parts: list[torch.Tensor] = []
            for g, net in enumerate(nets):
                ctx = torch.cat([ctx_prefix, *parts], dim=1) if parts else ctx_prefix
                mu, sigma = call(net, ctx)
                y_part = None if y_grid is None else y_grid[:, g * Mg:(g + 1) * Mg]
                parts.append(handler(Step(k, ph, j, g), y_part, mu, sigma))
            return torch.cat(parts, dim=1)

        y_coarse = None if y is None else _coarsest(y, S)
        y_hat_k = group_loop(self.coarse, _coarsest(feats, S), y_coarse, S - 1, (0, 0), 0)
        for k in range(S - 2, -1, -1):
            decoded = [y_hat_k]  # phase (0,0) of scale k is the coarser scale
            for j, ph in enumerate(PHASES, start=1):
                ctx = torch.cat([_grid(feats, k, ph).to(y_hat_k.dtype), *decoded], dim=1)
                y_grid = None if y is None else _grid(y, k, ph)
                decoded.append(group_loop(self.phase_nets[j - 1], ctx, y_grid, k, ph, j))
            y_hat_k = _interleave(*decoded)
        return y_hat_k

    # ---- handlers ----------------------------------------------------------------------------
    def forward(self, feats: torch.Tensor, y: torch.Tensor, rate_mode: str | None = None,
                rate_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable pass: returns (y_hat with straight-through rounding, bits per sample (B,)).

        rate_mode "noise" (training default): rate of y + U(-1/2, 1/2); "ste" (eval default, used
        by encoder-side optimisation): rate of the actually rounded values, gradient passed
        straight through the rounding. rate_weight (M,), optional: each latent channel's bits
        are multiplied by it (a training curriculum for channels added by widening, so they can
        learn to carry information before they pay their full rate; not a code length).
        """
        if rate_weight is not None and tuple(rate_weight.shape) != (y.shape[1],):
            raise ValueError(f"rate_weight must have shape ({y.shape[1]},), got "
                             f"{tuple(rate_weight.shape)}")
        Mg = y.shape[1] // self.cfg.groups
        bits = torch.zeros(y.shape[0], device=y.device)
        scale_min = self.cfg.scale_min
        mode = rate_mode or ("noise" if self.training else "ste")
        if mode not in ("noise", "ste"):
            raise ValueError(f"rate_mode must be 'noise' or 'ste', got {mode!r}")

        def train_handler(step: Step, y_part, mu, sigma):
            nonlocal bits
            r = y_part.float() - mu
            r_hat = r + (torch.round(r) - r).detach()
            rate_in = r + torch.empty_like(r).uniform_(-0.5, 0.5) if mode == "noise" else r_hat
            lik = gaussian_likelihood(rate_in, torch.zeros_like(mu), sigma, scale_min)
            cost = -torch.log2(lik)
            if rate_weight is not None:
                w = rate_weight[step.group * Mg:(step.group + 1) * Mg].to(cost.dtype)
                cost = cost * w.view(1, -1, 1, 1)
            bits = bits + cost.flatten(1).sum(1)
            return mu + r_hat

        y_hat = self.run(feats, y, train_handler)
        return y_hat, bits

    def code(self, feats: torch.Tensor, y: torch.Tensor | None, coder, snap: SnappedGaussian,
             fixed: dict) -> tuple[torch.Tensor, float]:
        """Encode (coder.mode == 'encode', y given) or decode (y None) through the same loop.

        ``fixed`` maps each ContextNet to its FixedPointNet; feats must be on the fixed-point
        grid (float64). The nets give exact (mu, log_sigma); the snapping is then exact too.
        Returns (y_hat float64, ideal bits of the coded symbols under the snapped model).
        """
        est = 0.0

        def exact_call(net, ctx):
            mu, log_sigma = fixed[net](ctx).chunk(2, dim=1)
            return mu, log_sigma

        def coding_handler(step: Step, y_part, mu, log_sigma):
            nonlocal est
            mu_s = snap.snap_mean(mu)
            idx = snap.index_from_log(log_sigma)
            flat_idx = idx.flatten().numpy()
            q_in = None if y_part is None else snap.symbols(y_part, mu_s).flatten().numpy()
            q = coder.code(None if q_in is None else q_in.astype(np.int32), flat_idx)
            q_t = torch.as_tensor(np.asarray(q, dtype=np.float64)).view(mu_s.shape)
            est += snap.bits(q_t, idx)
            return q_t + mu_s

        with torch.no_grad():
            y_in = None if y is None else y.to(torch.float64)
            y_hat = self.run(feats.to(torch.float64), y_in, coding_handler, exact_call)
        return y_hat, est
