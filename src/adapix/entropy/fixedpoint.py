"""Fixed-point execution of the entropy-parameter networks: the same result on every machine.

Why: the decoder must derive exactly the same coding parameters (mean grid point, scale index) as
the encoder, or the ANS stream desynchronises. Float convolutions may differ in their last bits
between thread counts, oneDNN on/off, CPU and GPU, because they sum in different orders.

How (in the spirit of Balle et al., "Integer networks for data compression with latent-variable
models", ICLR 2019, applied after training): every value is an integer held in a float64 tensor.

* activations A: real value A / 2**ACT_BITS (ACT_BITS = 10), clamped to |A| < 2**21;
* weights W_q = round(w * 2**s) with a per-layer power of two s chosen so |W_q| <= 2**15;
  biases at the accumulator scale 2**(ACT_BITS + s);
* a convolution sums at most 2**13 products of at most 2**36, so every partial sum is an
  integer below 2**53 and float64 represents it exactly: the result does not depend on the
  order of summation, hence not on threads, BLAS, oneDNN or the device (checked at build time);
* re-quantisation divides by a power of two and rounds half-to-even (exact, deterministic);
* GELU is a lookup table over the grid [-8, 8] stored with the weights (identity above, 0 below).

Outputs are exact dyadic numbers; ``SnappedGaussian`` turns them into coder integers with
comparisons only. Shapes: as the float modules they mirror, (B, C, H, W).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ACT_BITS = 10
ACT_LIMIT = 2.0 ** 21 - 1
W_BITS = 15
LUT_RANGE = 8  # GELU table covers [-8, 8]


def gelu_lut() -> torch.Tensor:
    """round(GELU(P / 2**10) * 2**10) for P in [-8*2**10, 8*2**10]; built at export, stored."""
    p = torch.arange(-LUT_RANGE * 2 ** ACT_BITS, LUT_RANGE * 2 ** ACT_BITS + 1, dtype=torch.float64)
    return torch.round(F.gelu(p / 2 ** ACT_BITS) * 2 ** ACT_BITS).to(torch.int64)


@dataclass
class _Layer:
    kind: str              # "conv" or "deconv"
    weight: torch.Tensor   # float64 integers
    bias: torch.Tensor     # float64 integers at scale 2**(ACT_BITS + shift)
    shift: int
    stride: int
    padding: int
    output_padding: int
    gelu_after: bool


class FixedPointNet:
    """A frozen integer copy of an ``nn.Sequential`` of Conv2d / ConvTranspose2d / GELU."""

    def __init__(self, seq: nn.Sequential, lut: torch.Tensor):
        self.lut = lut.to(torch.float64)
        mods = list(seq)
        self.layers: list[_Layer] = []
        for i, m in enumerate(mods):
            if isinstance(m, nn.GELU):
                continue
            if not isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                raise TypeError(f"fixed-point execution does not support {type(m).__name__}")
            w = m.weight.detach().to(torch.float64)
            peak = float(w.abs().max())
            exp = math.frexp(peak)[1] if peak > 0 else 0  # peak < 2**exp, exact
            shift = W_BITS - exp
            wq = torch.round(torch.ldexp(w, torch.tensor(shift, dtype=torch.float64)))
            b = m.bias.detach().to(torch.float64) if m.bias is not None else torch.zeros(w.shape[0])
            bq = torch.round(torch.ldexp(b, torch.tensor(ACT_BITS + shift, dtype=torch.float64)))
            fan_in = w[0].numel() if isinstance(m, nn.Conv2d) else w[:, 0].numel()
            if fan_in * 2.0 ** W_BITS * ACT_LIMIT + bq.abs().max() >= 2.0 ** 53:
                raise ValueError("fixed-point accumulator bound exceeded; layer too wide")
            deconv = isinstance(m, nn.ConvTranspose2d)
            gelu = i + 1 < len(mods) and isinstance(mods[i + 1], nn.GELU)
            self.layers.append(_Layer("deconv" if deconv else "conv", wq, bq, shift, m.stride[0],
                                      m.padding[0], m.output_padding[0] if deconv else 0, gelu))

    def _gelu(self, p: torch.Tensor) -> torch.Tensor:
        r = LUT_RANGE * 2 ** ACT_BITS
        idx = (p.clamp(-r, r) + r).long()
        out = self.lut[idx]
        return torch.where(p > r, p, torch.where(p < -r, torch.zeros_like(p), out))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: real values on the 2**-ACT_BITS grid (float64). Returns exact real values of the
        last layer's output (float64 dyadic, before any rounding)."""
        a = torch.round(torch.ldexp(x.to(torch.float64), torch.tensor(ACT_BITS)))
        a = a.clamp(-ACT_LIMIT, ACT_LIMIT)
        for k, L in enumerate(self.layers):
            if L.kind == "conv":
                acc = F.conv2d(a, L.weight, L.bias, stride=L.stride, padding=L.padding)
            else:
                acc = F.conv_transpose2d(a, L.weight, L.bias, stride=L.stride, padding=L.padding,
                                         output_padding=L.output_padding)
            if k == len(self.layers) - 1:
                return torch.ldexp(acc, torch.tensor(-(ACT_BITS + L.shift)))
            a = torch.round(torch.ldexp(acc, torch.tensor(-L.shift))).clamp(-ACT_LIMIT, ACT_LIMIT)
            if L.gelu_after:
                a = self._gelu(a)
        raise ValueError("empty network")


def to_grid(x: torch.Tensor) -> torch.Tensor:
    """Rounds real values to the activation grid (exact, deterministic), float64."""
    two = torch.tensor(ACT_BITS)
    return torch.ldexp(torch.round(torch.ldexp(x.to(torch.float64), two)), -two)
