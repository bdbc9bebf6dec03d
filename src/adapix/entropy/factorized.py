"""Learned factorized (non-parametric) prior, used for the hyper latent z and the model stream s.

Balle et al., "Variational image compression with a scale hyperprior", ICLR 2018, appendix 6.1:
each channel c has a cumulative density c(x) = sigmoid(f_c(x)), f_c a small monotone network
(1 -> 3 -> 3 -> 3 -> 1 units with softplus-positive matrices and tanh gates). The probability of
the integer k is P(k) = c(k + 1/2) - c(k - 1/2).

Contract (shared by all entropy models of Adapix):

* ``forward(x)`` (training): returns (x_tilde with additive uniform noise for the rate,
  bits per sample (B,)) -- the decoder path uses ``round_ste(x)`` separately.
* ``compress(x) -> (bytes, x_hat)`` and ``decompress(bytes, shape) -> x_hat`` code integers with
  the per-channel probability tables built by :meth:`build_table` (stored with the weights).

Shapes: x is (B, C, *spatial); channel c uses density c.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError
from . import coder


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Rounding with a straight-through gradient."""
    return x + (torch.round(x) - x).detach()


@dataclass
class CategoricalTable:
    """Per-channel probability tables over integers ``offset[c] + 0 .. offset[c] + L - 1``."""

    pmf: np.ndarray     # float64 (C, L)
    offset: np.ndarray  # int64 (C,)

    @property
    def length(self) -> int:
        return int(self.pmf.shape[1])


class FactorizedPrior(nn.Module):
    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        self.channels = channels
        dims = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = float(np.log(np.expm1(1.0 / scale / dims[i + 1])))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))
        self.table: CategoricalTable | None = None

    def _logits_cdf(self, x: torch.Tensor) -> torch.Tensor:
        """x: (C, 1, n) -> logits of the cumulative (C, 1, n)."""
        for i, (m, b) in enumerate(zip(self.matrices, self.biases)):
            x = torch.matmul(F.softplus(m), x) + b
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def likelihood(self, x: torch.Tensor, floor: float = 1e-9) -> torch.Tensor:
        """P(x) of values x (B, C, ...) on unit bins, computed in float32, floored at ``floor``."""
        shape = x.shape
        v = x.float().transpose(0, 1).reshape(self.channels, 1, -1)
        lower = self._logits_cdf(v - 0.5)
        upper = self._logits_cdf(v + 0.5)
        sign = -torch.sign(lower + upper).detach()  # evaluate in the tail with smaller error
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        p = p.clamp_min(floor)
        perm = (shape[1], shape[0], *shape[2:])
        return p.reshape(perm).transpose(0, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: returns (x + U(-1/2, 1/2), bits per sample (B,))."""
        x_tilde = x + torch.empty_like(x).uniform_(-0.5, 0.5) if self.training else torch.round(x)
        bits = -torch.log2(self.likelihood(x_tilde)).flatten(1).sum(1)
        return x_tilde, bits

    # ---- tables and coding -------------------------------------------------------------------
    @torch.no_grad()
    def build_table(self, tail: float = 1e-10, search: int = 1024) -> CategoricalTable:
        """Evaluates the density on integers and keeps, per channel, the range holding all but
        ``tail`` of the mass. Called by export; the table is saved with the weights."""
        k = torch.arange(-search, search + 1, dtype=torch.float32)
        v = k.view(1, 1, -1).expand(1, self.channels, -1)
        p = self.likelihood(v, floor=0.0)[0].double()  # (C, n), unfloored so tails can be cut
        cdf = torch.cumsum(p, dim=1) / p.sum(1, keepdim=True)
        lo = (cdf < tail).sum(1)
        hi = (cdf < 1 - tail).sum(1)
        length = int((hi - lo).max().item()) + 1
        offset = (lo - search).long()
        idx = (lo.view(-1, 1) + torch.arange(length).view(1, -1)).clamp(max=2 * search)
        pmf = torch.gather(p, 1, idx).clamp_min(1e-15)  # every in-range symbol stays codable
        return CategoricalTable(pmf=pmf.numpy(), offset=offset.numpy())

    def _require_table(self) -> CategoricalTable:
        if self.table is None:
            raise WeightsError("entropy tables missing: load weights exported by `adapix export`")
        return self.table

    def quantize(self, x: torch.Tensor) -> np.ndarray:
        """x (B, C, ...) -> table indices int32 (C, n) (channel-major), clamped to the table."""
        t = self._require_table()
        q = torch.round(x.float()).to(torch.int64)
        off = torch.as_tensor(t.offset).view(1, -1, *([1] * (x.dim() - 2)))
        idx = (q - off).clamp(0, t.length - 1)
        return idx.transpose(0, 1).reshape(self.channels, -1).numpy().astype(np.int32)

    def compress(self, x: torch.Tensor) -> tuple[bytes, torch.Tensor]:
        """Codes round(x) (B, C, ...) channel by channel with each channel's fixed table (memory
        O(symbols + C * L)); returns the bytes and the decoded values x_hat."""
        t = self._require_table()
        idx = self.quantize(x)
        data = coder.encode_per_channel(idx, t.pmf)
        return data, self._dequantize(idx, x.shape)

    def decompress(self, data: bytes, shape: tuple[int, ...]) -> torch.Tensor:
        t = self._require_table()
        n = int(np.prod(shape)) // self.channels
        idx = coder.decode_per_channel(data, t.pmf, n)
        return self._dequantize(idx, shape)

    def _dequantize(self, idx: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
        """idx (C, n) channel-major -> values of ``shape`` (B, C, ...)."""
        t = self._require_table()
        perm = (shape[1], shape[0], *shape[2:])
        v = torch.as_tensor(idx.astype(np.int64)).view(perm).transpose(0, 1)
        off = torch.as_tensor(t.offset).view(1, -1, *([1] * (len(shape) - 2)))
        return (v + off).float()

    def estimate_bits(self, x_hat: torch.Tensor) -> float:
        """Ideal code length of already-quantized values under the table (bits)."""
        t = self._require_table()
        idx = self.quantize(x_hat)
        pmf = t.pmf / t.pmf.sum(1, keepdims=True)
        p = np.take_along_axis(pmf, idx.astype(np.int64), axis=1)
        return float(-np.log2(np.maximum(p, 2.0 ** -24)).sum())
