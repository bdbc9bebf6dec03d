"""AdapixModel with a swapped entropy model of y and a switchable model stream, for ablations.

Data flow of :meth:`AblationModel.forward` (x (B,3,H,W) in [0,1], t (B,) quality positions), the
same as :meth:`adapix.model.AdapixModel.forward` except for the two switches::

    y, z, s = analyse(x, t)                      y (B,M,H/16,W/16), z (B,Nh,H/64,W/64), s (B,D)
    bits_z  = z_prior(z);  z_hat = round_ste(z)
    stream=True:  bits_s = s_prior(s), s_hat = round_ste(s)
    stream=False: bits_s = 0,          s_hat = 0      (the generated layers see a zero stream;
                                                       the generator's output is then a constant,
                                                       i.e. a learned static offset -- no per-image
                                                       adaptation, as in a codec without it)
    y_hat, bits_y = entropy(h_s(z_hat), y)      entropy = MSPModel | HyperpriorOnly | SerialContext
    x_hat = synthesize(y_hat, s_hat, t)

The model stream ("neural syntax", Wang et al., "Neural Data-Dependent Transform for Learned
Image Compression", CVPR 2022) is what ``stream`` switches. The output is the project's
:class:`adapix.model.ForwardOutput`, so the training loss of :mod:`adapix.train.loop` applies.

Only training and rate estimation are supported: the bit-exact coding path (fixed-point context
nets, ``compress``/``decompress``) exists for MSP only, and the other variants refuse it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import ModelConfig
from ..entropy.factorized import round_ste
from ..model import AdapixModel, ForwardOutput
from .variants import CONTEXTS, build_entropy_model, sequential_steps


@dataclass(frozen=True)
class Variant:
    """One ablation arm: the context model of y and whether the model stream is on."""

    context: str
    stream: bool = True

    @property
    def name(self) -> str:
        return self.context if self.stream else f"{self.context}-nostream"

    @classmethod
    def parse(cls, text: str) -> "Variant":
        """"msp", "hyperprior", "serial", optionally with the suffix "-nostream"."""
        name = text.strip()
        stream = not name.endswith("-nostream")
        context = name[: -len("-nostream")] if not stream else name
        if context not in CONTEXTS:
            raise ValueError(f"unknown variant {text!r}: expected one of {', '.join(CONTEXTS)}, "
                             "optionally with the suffix -nostream (e.g. msp-nostream)")
        return cls(context, stream)


class AblationModel(AdapixModel):
    """An AdapixModel whose ``msp`` attribute is the chosen entropy model of y."""

    def __init__(self, cfg: ModelConfig, context: str = "msp", stream: bool = True):
        super().__init__(cfg)
        if context not in CONTEXTS:
            raise ValueError(f"unknown context model {context!r} (choose from {', '.join(CONTEXTS)})")
        if context != "msp":
            # the transforms were initialised before, from the same RNG stream for every variant
            self.msp = build_entropy_model(cfg, context)
        self.context = context
        self.stream = stream

    @property
    def variant(self) -> Variant:
        return Variant(self.context, self.stream)

    @property
    def decode_steps(self) -> int:
        if self.context == "serial":
            raise ValueError("the serial context model has h*w decoding steps: "
                             "use decode_steps_at(padded_hw)")
        return super().decode_steps

    def decode_steps_at(self, padded_hw: tuple[int, int]) -> int:
        """Sequential decoding steps (hyper + model stream step, then y) for a padded image size."""
        latent = (int(padded_hw[0]) // 16, int(padded_hw[1]) // 16)
        return 1 + sequential_steps(self.msp, latent)

    def stream_hat(self, s: torch.Tensor) -> torch.Tensor:
        """s_hat as the decoder sees it: round_ste(s), or zeros with the stream off."""
        return round_ste(s) if self.stream else torch.zeros_like(s)

    def forward(self, x: torch.Tensor, t: torch.Tensor, postfilter: bool = False,
                rate_mode: str | None = None,
                rate_weight: torch.Tensor | None = None) -> ForwardOutput:
        """As ``AdapixModel.forward``; ``rate_weight`` (the curriculum of channels added by
        widening M) has no use in the ablations and must be None."""
        if rate_weight is not None:
            raise ValueError("ablation models take no rate_weight (they are never widened)")
        lat = self.analyse(x, t)
        _, bits_z = self.z_prior(lat.z)
        if self.stream:
            _, bits_s = self.s_prior(lat.s.unsqueeze(-1))
        else:
            bits_s = torch.zeros(x.shape[0], device=x.device)
        z_hat = round_ste(lat.z)
        feats = self.h_s(z_hat)
        y_hat, bits_y = self.msp(feats, lat.y, rate_mode)
        x_hat = self.synthesize(y_hat, self.stream_hat(lat.s), t, postfilter)
        return ForwardOutput(x_hat=x_hat, bits_y=bits_y, bits_z=bits_z, bits_s=bits_s)

    def fixed_nets(self) -> dict:
        if self.context != "msp" or not self.stream:
            raise NotImplementedError(
                f"variant {self.variant.name}: bit-exact coding exists only for the full MSP model; "
                "ablation variants are evaluated by their estimated rate")
        return super().fixed_nets()


def build_ablation_model(cfg: ModelConfig, context: str, stream: bool) -> AblationModel:
    """An AdapixModel (subclass) with entropy model ``context`` and the model stream on/off."""
    return AblationModel(cfg, context, stream)


__all__ = ["AblationModel", "Variant", "build_ablation_model"]
