"""Transforms of Adapix. They hold no coding logic (no quantisation, no likelihoods).

Data flow (x: image in [0,1], (B,3,H,W), H and W multiples of ``config.pad_multiple``)::

    y  = g_a(x)                  (B, M, H/16, W/16)   analysis
    z  = h_a(y)                  (B, Nh, H/64, W/64)  hyper analysis
    f  = h_s(z_hat)              (B, 2M, H/16, W/16)  hyper features for the MSP model
    s  = syntax_enc(y)           (B, D)               model stream (neural syntax), D = syntax_dim
    w  = generator(s_hat)        per-image weights of the last synthesis layer and post-filter
    x' = g_s(y_hat, w.synthesis) (B, 3, H, W)         synthesis with a data-dependent last layer
    x''= postfilter(x', w.post)                        optional residual post-processing filter

The data-dependent last layer follows Wang et al., "Neural Data-Dependent Transform for Learned
Image Compression", CVPR 2022: a decoder-side generator maps the transmitted model stream to
(part of) the weights of the synthesis transform, so the decoder adapts to each image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .layers import GDN, ResidualBlock, conv, deconv
from .ratecond import modulate


class AnalysisTransform(nn.Module):
    """g_a: (B,3,H,W) -> (B,M,H/16,W/16). Four stride-2 5x5 convolutions with GDN, and with
    ``cfg.analysis_blocks`` = k > 0, k residual blocks after the second and third GDN (1/4 and
    1/8 resolution, N channels) and after the last convolution (1/16, M channels):

        x -> conv GDN conv GDN [k blocks] conv GDN [k blocks] conv [k blocks] -> y

    ``mods``: optional rate modulation ((B, 3, N) scales, (B, 3, N) shifts) applied to the input
    of each GDN (``adapix.ratecond``).
    """

    AFTER = (3, 5, 6)  # the layers of ``net`` that each group of blocks follows

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        N, M = cfg.N, cfg.M
        self.net = nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N),
                                 conv(N, M))
        self.blocks = _block_groups((N, N, M), cfg.analysis_blocks)

    def forward(self, x: torch.Tensor, mods=None) -> torch.Tensor:
        return _modulated(self.net, x, mods, blocks_after(self))


def blocks_after(transform: nn.Module) -> dict[int, nn.Module] | None:
    """{index in the layer sequence: the group of residual blocks that follows that layer} of a
    transform with ``AFTER`` and ``blocks`` (None without blocks)."""
    return None if transform.blocks is None else dict(zip(transform.AFTER, transform.blocks))


def _block_groups(channels: tuple[int, ...], k: int) -> nn.ModuleList | None:
    """One group of k residual blocks per entry of ``channels`` (None when k is 0)."""
    if not k:
        return None
    return nn.ModuleList(nn.Sequential(*(ResidualBlock(c) for _ in range(k))) for c in channels)


def _modulated(layers: nn.Sequential, h: torch.Tensor, mods,
               after: dict[int, nn.Module] | None = None) -> torch.Tensor:
    """Runs ``layers``, modulating the input of the k-th (inverse) GDN by layer k of ``mods``
    and running ``after[i]`` (if given) on the output of layer i."""
    k = 0
    for i, layer in enumerate(layers):
        if mods is not None and isinstance(layer, GDN):
            h = modulate(h, mods, k)
            k += 1
        h = layer(h)
        if after is not None and i in after:
            h = after[i](h)
    return h


class FullResHead(nn.Module):
    """g_s's full-resolution head: (B, N, H/2, W/2) features -> (B, 3, H, W), a nonlinear
    branch added to the linear last layer's output (``model.synthesis_head`` = C channels):

        h -> deconv 5x5 (N -> C, x2) -> lrelu -> conv 3x3 (C -> C) -> lrelu -> conv 3x3 (C -> 3)

    The last convolution starts at zero, so a head added to a trained g_s keeps its function.
    Cost per output pixel: 25 N C / 4 + 9 C^2 + 27 C MAC, 29 kMAC at N = 96, C = 32 (decoder
    194 -> 224 kMAC/px with the session-27 model, ``adapix bench``)."""

    def __init__(self, N: int, C: int):
        super().__init__()
        self.up = deconv(N, C)
        self.c1 = nn.Conv2d(C, C, 3, padding=1)
        self.out = nn.Conv2d(C, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        slope = ResidualBlock.SLOPE
        return self.out(F.leaky_relu(self.c1(F.leaky_relu(self.up(h), slope)), slope))


class SynthesisTransform(nn.Module):
    """g_s: (B,M,h,w) -> (B,3,16h,16w). The last transposed conv has per-image weight offsets.

    With ``cfg.synthesis_blocks`` = k > 0, k residual blocks (N channels) follow each inverse GDN
    (1/8, 1/4 and 1/2 resolution; they start at the identity):

        y_hat -> deconv IGDN [k] deconv IGDN [k] deconv IGDN [k] last -> x'

    With ``cfg.synthesis_head`` = C > 0, a :class:`FullResHead` of C channels reads the same
    1/2-resolution features as the last layer, and its output is added to the last layer's.

    Its hidden layers have ``cfg.Ns`` channels (written N here; ``model.synthesis_channels``, by
    default g_a's N). ``last_delta`` has shape (B, N, 3, 5, 5) (a ConvTranspose2d weight per
    image) or is None; ``mods`` is the optional rate modulation of the inverse GDNs' inputs, as
    in g_a.
    """

    AFTER = (1, 3, 5)  # the layers of ``body`` (the inverse GDNs) that each group of blocks follows

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        N, M = cfg.Ns, cfg.M
        self.body = nn.Sequential(deconv(M, N), GDN(N, inverse=True), deconv(N, N),
                                  GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True))
        self.blocks = _block_groups((N, N, N), cfg.synthesis_blocks)
        self.last = deconv(N, 3)
        self.head = FullResHead(N, cfg.synthesis_head) if cfg.synthesis_head else None

    def forward(self, y_hat: torch.Tensor, last_delta: torch.Tensor | None = None,
                mods=None) -> torch.Tensor:
        h = _modulated(self.body, y_hat, mods, blocks_after(self))
        out = self._last(h, last_delta)
        return out if self.head is None else out + self.head(h)

    def _last(self, h: torch.Tensor, last_delta: torch.Tensor | None) -> torch.Tensor:
        if last_delta is None:
            return self.last(h)
        B, N, H, W = h.shape
        weight = (self.last.weight.unsqueeze(0) + last_delta.to(h.dtype)).reshape(B * N, 3, 5, 5)
        out = F.conv_transpose2d(h.reshape(1, B * N, H, W), weight, None, stride=2, padding=2,
                                 output_padding=1, groups=B)
        return out.reshape(B, 3, 2 * H, 2 * W) + self.last.bias.view(1, 3, 1, 1).to(h.dtype)


class HyperAnalysis(nn.Module):
    """h_a: (B,M,h,w) -> (B,Nh,h/4,w/4)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        M, Nh = cfg.M, cfg.Nh
        self.net = nn.Sequential(conv(M, Nh, 3, 1), nn.GELU(), conv(Nh, Nh, 5, 2), nn.GELU(),
                                 conv(Nh, Nh, 5, 2))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(y)


class HyperSynthesis(nn.Module):
    """h_s: (B,Nh,h/4,w/4) -> (B,2M,h,w) features for the MSP context networks."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        M, Nh = cfg.M, cfg.Nh
        self.net = nn.Sequential(deconv(Nh, M, 5, 2), nn.GELU(), deconv(M, M * 3 // 2, 5, 2),
                                 nn.GELU(), conv(M * 3 // 2, 2 * M, 3, 1))

    def forward(self, z_hat: torch.Tensor) -> torch.Tensor:
        return self.net(z_hat)


class SyntaxEncoder(nn.Module):
    """Model-stream encoder: (B,M,h,w) -> s (B,D). Mean and max pooling of a 1x1 projection."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.proj = nn.Conv2d(cfg.M, 2 * cfg.syntax_dim, 1)
        self.out = nn.Linear(4 * cfg.syntax_dim, cfg.syntax_dim)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.proj(y))
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.out(pooled)


@dataclass
class GeneratedWeights:
    synthesis_delta: torch.Tensor  # (B, Ns, 3, 5, 5), Ns = g_s's channels (ModelConfig.Ns)
    post_weight: torch.Tensor      # (B, 3, C, 3, 3)
    post_bias: torch.Tensor        # (B, 3)


class WeightGenerator(nn.Module):
    """Generates per-image decoder weights from the decoded model stream s_hat (B, D).

    The output layer starts at zero, so an untrained generator leaves the decoder unchanged.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D, N, C = cfg.syntax_dim, cfg.Ns, cfg.postfilter_channels
        self.hidden = nn.Sequential(nn.Linear(D, 4 * D), nn.GELU())
        self.synth = nn.Linear(4 * D, N * 3 * 25)
        self.post = nn.Linear(4 * D, 3 * C * 9 + 3)
        for lin in (self.synth, self.post):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.N, self.C = N, C

    def forward(self, s_hat: torch.Tensor) -> GeneratedWeights:
        B = s_hat.shape[0]
        h = self.hidden(s_hat)
        delta = (0.01 * self.synth(h)).view(B, self.N, 3, 5, 5)
        post = 0.01 * self.post(h)
        pw = post[:, : 3 * self.C * 9].reshape(B, 3, self.C, 3, 3)
        return GeneratedWeights(delta, pw, post[:, 3 * self.C * 9:])


class PostFilter(nn.Module):
    """Residual post-processing filter on the decoded image; its last layer is per-image.

    x'' = x' + conv(relu(conv(relu(conv(x'))))) with the last conv = static + generated weights.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        C = cfg.postfilter_channels
        self.c1 = nn.Conv2d(3, C, 3, padding=1)
        self.c2 = nn.Conv2d(C, C, 3, padding=1)
        self.c3 = nn.Conv2d(C, 3, 3, padding=1)
        nn.init.zeros_(self.c3.weight)
        nn.init.zeros_(self.c3.bias)

    def forward(self, x: torch.Tensor, gen: GeneratedWeights) -> torch.Tensor:
        B, _, H, W = x.shape
        h = F.relu(self.c2(F.relu(self.c1(x))))
        C = h.shape[1]
        w = (self.c3.weight.unsqueeze(0) + gen.post_weight.to(h.dtype)).reshape(B * 3, C, 3, 3)
        b = (self.c3.bias.unsqueeze(0) + gen.post_bias.to(h.dtype)).reshape(B * 3)
        r = F.conv2d(h.reshape(1, B * C, H, W), w, b, padding=1, groups=B)
        return x + r.reshape(B, 3, H, W)
