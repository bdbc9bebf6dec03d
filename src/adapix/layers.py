"""Building blocks of the transforms: GDN, strided convolutions and residual blocks.

GDN (generalized divisive normalization, Balle et al., "Density modeling of images using a
generalized normalization transformation", ICLR 2016):

    y_i = x_i / sqrt(beta_i + sum_j gamma_ij * x_j**2)        (inverse: multiply instead)

beta and gamma are kept non-negative by a squared reparametrisation with a small floor.
The output is float32 (also under bfloat16 autocast, where the 1x1 convolution runs in bfloat16).
Shapes: (B, C, H, W) in, same out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GDN(nn.Module):
    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6,
                 gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.pedestal = 2.0 ** -36
        self.beta_bound = (beta_min + self.pedestal) ** 0.5
        self.beta = nn.Parameter(torch.sqrt(torch.ones(channels) + self.pedestal))
        self.gamma = nn.Parameter(torch.sqrt(gamma_init * torch.eye(channels) + self.pedestal))

    def effective_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(beta (C,), gamma (C, C)) of the formula, from the stored reparametrisation."""
        beta = torch.clamp(self.beta, min=self.beta_bound) ** 2 - self.pedestal
        gamma = torch.clamp(self.gamma, min=self.pedestal ** 0.5) ** 2 - self.pedestal
        return beta, gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        beta, gamma = self.effective_params()
        norm = F.conv2d(x * x, gamma.view(c, c, 1, 1).to(x.dtype), beta.to(x.dtype))
        norm = torch.sqrt(norm.float().clamp_min(1e-12))
        # the output stays float32 under bf16 autocast (the next convolution casts its input
        # again): rounding the inverse GDN's output, and so g_s's residual stream, to bfloat16
        # cost 0.11 dB more at quality 95 on Kodak (docs/results.md, "Speed", session 27)
        x = x.float()
        return x * norm if self.inverse else x / norm


def conv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.Conv2d:
    """Strided convolution that divides the size by ``stride`` (``same`` padding)."""
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def deconv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """Transposed convolution that multiplies the size by ``stride``."""
    return nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=k // 2,
                              output_padding=stride - 1)


class ResidualBlock(nn.Module):
    """x + c2(leaky_relu(c1(x))) with two 3x3 convolutions of ``channels`` channels; c2 starts
    at zero, so a block added to a trained transform leaves its function unchanged (the deeper
    analysis transforms of Cheng et al., CVPR 2020, and of Yang and Mandt, "Computationally-
    efficient neural image compression with shallow decoders", ICCV 2023, which put the
    capacity in the encoder). Shapes: (B, C, H, W) in, same out."""

    SLOPE = 0.01  # of the leaky ReLU between the convolutions

    def __init__(self, channels: int):
        super().__init__()
        self.c1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.c2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.c2.weight)
        nn.init.zeros_(self.c2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c2(F.leaky_relu(self.c1(x), self.SLOPE))
