"""The Adapix model: transforms + entropy models composed, for training and for coding.

Data flow (x in [0,1], (B,3,H,W), H, W multiples of ``cfg.pad_multiple``; t = quality position in
[0, K-1] between the K lambda anchors, per sample)::

    y   = g_a(x [, mods_a(t)]) * gain(t)        variable rate by per-channel gains (Cui et al.,
                                                "Asymmetric gained deep image compression", 2021),
                                                optionally hidden layers too (adapix.ratecond)
    z   = h_a(y)        -> z_hat   (factorized prior)             hyper stream
    s   = syntax(y)     -> s_hat   (factorized prior)             model stream
    f   = h_s(z_hat)
    y_hat = MSP(f, y)                                             content stream
    x_hat = g_s(y_hat * inv_gain(t), generator(s_hat) [, mods_s(t)])  [-> post-filter]

Training (``forward``) returns bits per sample of each stream and x_hat; coding (``compress`` /
``decompress``) returns or consumes the three byte streams, and both sides reconstruct through
:meth:`AdapixModel.synthesize`, so the encoder's reconstruction is the decoder's. ``bf16=True``
runs g_s in bfloat16 autocast, channels_last (the file's BF16 flag, :mod:`adapix.container`): the
entropy coding is fixed point either way, so only the synthesis, and the pixels, change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .config import ModelConfig
from .entropy.coder import StepDecoder, StepEncoder
from .entropy.factorized import FactorizedPrior, round_ste
from .entropy.fixedpoint import FixedPointNet
from .entropy.gaussian import SnappedGaussian
from .entropy.msp import MSPModel
from .errors import WeightsError
from .ratecond import PREFIX as RATE_MOD_PREFIX
from .ratecond import TABLES as RATE_MOD_TABLES
from .ratecond import RateModulation, interp_rows
from .transforms import (AnalysisTransform, HyperAnalysis, HyperSynthesis, PostFilter,
                         SyntaxEncoder, SynthesisTransform, WeightGenerator)


@dataclass
class ForwardOutput:
    """Training output. Bits are per sample (B,); x_hat (B,3,H,W)."""

    x_hat: torch.Tensor
    bits_y: torch.Tensor
    bits_z: torch.Tensor
    bits_s: torch.Tensor

    @property
    def bits(self) -> torch.Tensor:
        return self.bits_y + self.bits_z + self.bits_s


@dataclass
class Streams:
    """The three entropy-coded sections of one image."""

    model_stream: bytes
    hyper: bytes
    content: bytes


@dataclass
class Latents:
    """Continuous latents of one image, the starting point of encoder-side optimisation."""

    y: torch.Tensor  # (1, M, H/16, W/16), gained
    z: torch.Tensor  # (1, Nh, H/64, W/64)
    s: torch.Tensor  # (1, D)


@dataclass
class CodingResult:
    streams: Streams
    x_hat: torch.Tensor      # (1,3,H,W) the reconstruction, identical to what decoding yields
    est_bits: float          # ideal code length from the snapped model, all streams
    postfilter: bool = False  # whether x_hat went through the post-filter (the header's flag)
    t: float | None = None   # the quality position it was coded at (None: not recorded)


class AdapixModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        K = len(cfg.lambdas)
        self.g_a = AnalysisTransform(cfg)
        self.g_s = SynthesisTransform(cfg)
        self.h_a = HyperAnalysis(cfg)
        self.h_s = HyperSynthesis(cfg)
        self.syntax = SyntaxEncoder(cfg)
        self.generator = WeightGenerator(cfg)
        self.postfilter = PostFilter(cfg)
        self.z_prior = FactorizedPrior(cfg.Nh)
        self.s_prior = FactorizedPrior(cfg.syntax_dim)
        self.msp = MSPModel(cfg)
        lam = torch.tensor(cfg.lambdas)
        init = 0.5 * torch.log(lam / lam[K // 2])  # quantisation step ~ 1/sqrt(lambda)
        self.log_gain = nn.Parameter(init.view(K, 1).repeat(1, cfg.M))
        self.log_inv_gain = nn.Parameter(-init.view(K, 1).repeat(1, cfg.M))
        self.snap = SnappedGaussian(cfg)
        # registered last, so its parameters come last (an optimiser state without them fits)
        self.rate_mod = RateModulation(K, cfg.N, cfg.Ns) if cfg.rate_modulation else None
        self.gelu_lut: torch.Tensor | None = None  # entropy table, built at export
        self._fixed_key: tuple | None = None
        self._fixed: dict | None = None

    # ---- variable rate -----------------------------------------------------------------------
    @property
    def decode_steps(self) -> int:
        """Sequential entropy-decoding steps per image: 1 (hyper + model stream) + MSP steps.
        A constant of the model, independent of the image size."""
        return 1 + self.msp.decode_steps

    def _interp(self, table: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Geometric interpolation of gain vectors at positions t (B,) -> (B, M, 1, 1)."""
        return torch.exp(interp_rows(table, t)).view(t.shape[0], -1, 1, 1)

    def analysis_mods(self, t: torch.Tensor):
        """The rate modulation of g_a at positions t (B,), or None (``adapix.ratecond``)."""
        return None if self.rate_mod is None else self.rate_mod.analysis(t)

    def synthesis_mods(self, t: torch.Tensor):
        """The rate modulation of g_s at positions t (B,), or None (``adapix.ratecond``)."""
        return None if self.rate_mod is None else self.rate_mod.synthesis(t)

    def lam(self, t: torch.Tensor) -> torch.Tensor:
        """lambda at quality positions t (B,): log-linear between anchors."""
        return lambda_at(self.cfg.lambdas, t)

    # ---- training ----------------------------------------------------------------------------
    def analyse(self, x: torch.Tensor, t: torch.Tensor) -> Latents:
        y = self.g_a(x, self.analysis_mods(t)) * self._interp(self.log_gain, t).to(x.dtype)
        return Latents(y=y, z=self.h_a(y), s=self.syntax(y))

    def synthesize(self, y_hat: torch.Tensor, s_hat: torch.Tensor, t: torch.Tensor,
                   postfilter: bool, bf16: bool = False) -> torch.Tensor:
        """y_hat (B, M, h, w), s_hat (B, D), t (B,) -> x_hat (B, 3, 16h, 16w) float32 (not
        clamped). ``bf16``: g_s in bfloat16 autocast and channels_last (3.6-3.9x faster on a CPU
        with native bf16, :func:`adapix.hardware.bf16_is_fast`); the inverse GDNs' outputs, the
        weight generator and the post-filter stay float32."""
        x_hat, gen = self._synthesize_plain(y_hat, s_hat, t, bf16)
        return self.postfilter(x_hat, gen) if postfilter else x_hat

    def _synthesize_plain(self, y_hat: torch.Tensor, s_hat: torch.Tensor, t: torch.Tensor,
                          bf16: bool = False):
        """The synthesis without the post-filter: (x_hat, the generated layers)."""
        gen = self.generator(s_hat.float())
        y_in = y_hat * self._interp(self.log_inv_gain, t).to(y_hat.dtype)
        mods = self.synthesis_mods(t)
        if not bf16:
            return self.g_s(y_in, gen.synthesis_delta, mods), gen
        with torch.autocast(y_in.device.type, dtype=torch.bfloat16):
            x_hat = self.g_s(y_in.contiguous(memory_format=torch.channels_last),
                             gen.synthesis_delta, mods)
        return x_hat.float().contiguous(), gen

    def forward(self, x: torch.Tensor, t: torch.Tensor, postfilter: bool = False,
                rate_weight: torch.Tensor | None = None) -> ForwardOutput:
        lat = self.analyse(x, t)
        _, bits_z = self.z_prior(lat.z)
        _, bits_s = self.s_prior(lat.s.unsqueeze(-1))
        z_hat = round_ste(lat.z)
        s_hat = round_ste(lat.s)
        feats = self.h_s(z_hat)
        y_hat, bits_y = self.msp(feats, lat.y, rate_weight=rate_weight)
        x_hat = self.synthesize(y_hat, s_hat, t, postfilter)
        return ForwardOutput(x_hat=x_hat, bits_y=bits_y, bits_z=bits_z, bits_s=bits_s)

    # ---- coding ------------------------------------------------------------------------------
    def _check_tables(self) -> None:
        if self.z_prior.table is None or self.s_prior.table is None or self.gelu_lut is None:
            raise WeightsError("entropy tables missing: weights must come from `adapix export` "
                               "(or call adapix.weights.build_tables on a freshly trained model)")

    def fixed_nets(self) -> dict:
        """Fixed-point copies of h_s and the MSP context nets (see entropy.fixedpoint).

        Rebuilt whenever a parameter of those nets changed (tracked by tensor versions)."""
        self._check_tables()
        mods = [self.h_s, *self.msp.coarse, *[n for ph in self.msp.phase_nets for n in ph]]
        key = tuple((id(p), p._version) for m in mods for p in m.parameters())
        key += (id(self.gelu_lut),)
        if key != self._fixed_key:
            fixed = {self.h_s: FixedPointNet(self.h_s.net, self.gelu_lut)}
            for m in mods[1:]:
                fixed[m] = FixedPointNet(m.net, self.gelu_lut)
            self._fixed, self._fixed_key = fixed, key
        return self._fixed

    def hyper_features(self, z_hat: torch.Tensor) -> torch.Tensor:
        """h_s(z_hat) in exact fixed point (float64), as both encoder and decoder compute it."""
        return self.fixed_nets()[self.h_s](z_hat)

    def _code_streams(self, lat: Latents) -> tuple[Streams, torch.Tensor, torch.Tensor, float]:
        """Entropy-codes given (continuous) latents: (streams, y_hat, s_hat (1, D), estimated
        bits of all streams); y is rounded around the MSP means."""
        fixed = self.fixed_nets()
        s_bytes, s_hat = self.s_prior.compress(lat.s.unsqueeze(-1))
        z_bytes, z_hat = self.z_prior.compress(lat.z)
        feats = self.hyper_features(z_hat)
        enc = StepEncoder(self.snap.table)
        y_hat, est_y = self.msp.code(feats, lat.y, enc, self.snap, fixed)
        content = enc.finish()
        est = est_y + self.z_prior.estimate_bits(z_hat) + self.s_prior.estimate_bits(s_hat)
        return Streams(s_bytes, z_bytes, content), y_hat, s_hat.squeeze(-1), est

    @torch.no_grad()
    def compress_latents(self, lat: Latents, t: float, postfilter: bool,
                         bf16: bool = False) -> CodingResult:
        """Codes given (continuous) latents; y is rounded around the MSP means."""
        streams, y_hat, s_hat, est = self._code_streams(lat)
        x_hat = self.synthesize(y_hat.float(), s_hat, torch.tensor([t]), postfilter, bf16)
        return CodingResult(streams, x_hat.clamp(0, 1), est, bool(postfilter), float(t))

    @torch.no_grad()
    def compress_latents_both(self, lat: Latents, t: float, bf16: bool = False
                              ) -> tuple[CodingResult, CodingResult]:
        """``compress_latents`` with the post-filter off and on, from one coding pass and one
        synthesis (the streams do not depend on the flag): (without, with). Each result is
        identical to what ``compress_latents`` gives, and to what decoding yields."""
        streams, y_hat, s_hat, est = self._code_streams(lat)
        x_plain, gen = self._synthesize_plain(y_hat.float(), s_hat, torch.tensor([t]), bf16)
        x_post = self.postfilter(x_plain, gen)
        return (CodingResult(streams, x_plain.clamp(0, 1), est, False, float(t)),
                CodingResult(streams, x_post.clamp(0, 1), est, True, float(t)))

    @torch.no_grad()
    def compress(self, x: torch.Tensor, t: float, postfilter: bool = False,
                 bf16: bool = False) -> CodingResult:
        """x (1,3,H,W) padded to ``cfg.pad_multiple``; t quality position."""
        lat = self.analyse(x, torch.tensor([t]))
        return self.compress_latents(lat, t, postfilter, bf16)

    @torch.no_grad()
    def decompress(self, streams: Streams, padded_hw: tuple[int, int], t: float,
                   postfilter: bool = False, bf16: bool = False) -> torch.Tensor:
        """Inverse of compress: returns x_hat (1,3,H,W) for the padded size."""
        fixed = self.fixed_nets()
        H, W = padded_hw
        s_hat = self.s_prior.decompress(streams.model_stream, (1, self.cfg.syntax_dim, 1))
        z_hat = self.z_prior.decompress(streams.hyper, (1, self.cfg.Nh, H // 64, W // 64))
        feats = self.hyper_features(z_hat)
        dec = StepDecoder(self.snap.table, streams.content)
        y_hat, _ = self.msp.code(feats, None, dec, self.snap, fixed)
        dec.finish()
        y_hat = y_hat.float()
        x_hat = self.synthesize(y_hat, s_hat.squeeze(-1), torch.tensor([t]), postfilter, bf16)
        return x_hat.clamp(0, 1)


def lambda_at(lambdas: tuple[float, ...], t: torch.Tensor) -> torch.Tensor:
    """lambda at quality positions t (B,) between the anchors ``lambdas``: log-linear."""
    return torch.exp(interp_rows(torch.log(torch.tensor(lambdas)), t))


def regrid_gains(table: torch.Tensor, old_lambdas, new_lambdas) -> torch.Tensor:
    """Gain vectors (K, M) at anchors ``old_lambdas`` -> (K', M) at ``new_lambdas`` (or any
    table (K, ...) with one row per anchor).

    Each log-gain row is piecewise linear in log(lambda) through the old anchors and extended
    linearly beyond the first and last ones, so a model trained on a narrower lambda range can start
    training on a wider one (``train.init`` with other ``model.lambdas``): at an old anchor the gains
    are unchanged, and a new anchor below the range starts from the old trend (the quantisation step
    grows ~ 1/sqrt(lambda))."""
    old = torch.log(torch.tensor(old_lambdas, dtype=torch.float64))
    new = torch.log(torch.tensor(new_lambdas, dtype=torch.float64))
    if table.shape[0] != old.numel() or old.numel() < 2:
        raise ValueError(f"gain table has {table.shape[0]} rows for {old.numel()} anchors")
    rows = []
    for v in new:
        i = int(torch.searchsorted(old, v).clamp(1, old.numel() - 1))  # segment [i-1, i]
        frac = float((v - old[i - 1]) / (old[i] - old[i - 1]))
        rows.append(table[i - 1] * (1 - frac) + table[i] * frac)
    return torch.stack(rows).to(table.dtype)


def adapt_state_to_lambdas(state: dict, old_lambdas, new_lambdas) -> dict:
    """A state dict for anchors ``old_lambdas`` made to fit a model with ``new_lambdas``: only the
    gain tables and the rate modulation's tables depend on the anchors (see
    :func:`regrid_gains`, which works row by row on any of them)."""
    if tuple(old_lambdas) == tuple(new_lambdas):
        return state
    state = dict(state)
    keys = ["log_gain", "log_inv_gain"] + [RATE_MOD_PREFIX + n for n in RATE_MOD_TABLES]
    for key in keys:
        if key in state:
            state[key] = regrid_gains(state[key], old_lambdas, new_lambdas)
    return state


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def quality_to_position(cfg: ModelConfig, quality: float) -> float:
    """quality q in 0..100 -> t = q / 100 * (K - 1) in [0, K-1]: the position between the K lambda
    anchors. The gain vectors of anchors floor(t) and ceil(t) are interpolated geometrically, so
    lambda(q) is log-linear in q from lambdas[0] (q = 0) to lambdas[-1] (q = 100)."""
    if not (0.0 <= quality <= 100.0) or math.isnan(quality):
        raise ValueError(f"quality must be in 0..100, got {quality}")
    return quality / 100.0 * (len(cfg.lambdas) - 1)


def position_to_quality(cfg: ModelConfig, t: float) -> float:
    """The inverse of :func:`quality_to_position`: t in [0, K-1] -> quality in 0..100."""
    return 100.0 * float(t) / (len(cfg.lambdas) - 1)


__all__ = ["AdapixModel", "ForwardOutput", "Streams", "Latents", "CodingResult",
           "adapt_state_to_lambdas", "count_parameters", "lambda_at", "position_to_quality",
           "quality_to_position", "regrid_gains"]
