"""Model configuration of Adapix.

A weights file stores this dataclass (as JSON in the safetensors metadata) next to the tensors, and a
model is always rebuilt from it (``AdapixModel(config)``), never guessed from tensor shapes.

Sizes, in the notation of the papers this codec follows:

* ``N``: channels of the analysis/synthesis transforms, ``M``: channels of the latent ``y``
  (``y`` has 1/16 of the image resolution), ``Nh``: channels of the hyper latent ``z`` (1/64).
* ``scales``: number of scales of the multi-scale progressive (MSP) model: ``y`` is split by 2x2
  polyphase ``scales - 1`` times; the coarsest scale has 1/4**(scales-1) of the latent positions.
* ``groups``: channel groups per phase; each is one sequential decoding step.
* ``syntax_dim``: length of the per-image model stream ``s`` (neural syntax).
* ``analysis_blocks``: residual blocks added to g_a at each of 1/4, 1/8 and 1/16 resolution (0: the
  plain four-convolution g_a). They cost encoding time only; the decoder is the same.
* ``synthesis_blocks``: residual blocks added to g_s after each of its inverse GDNs (1/8, 1/4 and
  1/2 resolution, N channels): a deeper synthesis, at a decoding cost (0: the plain g_s).
* ``synthesis_channels``: channels of g_s alone (0: ``N``, as in g_a): a wider synthesis, and so
  a higher reconstruction ceiling, at a decoding cost, with the encoder unchanged.
* ``synthesis_head``: channels of g_s's full-resolution head (0: none), a small nonlinear branch
  from the last 1/2-resolution features to the image, added to the linear last layer's output
  (``adapix.transforms.FullResHead``; it starts at zero, so adding it keeps the function).
* ``rate_modulation``: the hidden layers of g_a and g_s get a per-channel affine map chosen by the
  quality (``adapix.ratecond``), not only the latent's gains.
* ``lambdas``: the rate-distortion anchors of the variable-rate model (MSE on [0,255] images scaled
  to [0,1], loss = R + lambda * 255**2 * MSE as in CompressAI).
"""

from __future__ import annotations

import dataclasses
import math
import json
from dataclasses import dataclass

FORMAT_VERSION = 1  # version of the weights file layout (config + tensors + tables)


@dataclass(frozen=True)
class ModelConfig:
    N: int = 128
    M: int = 192
    Nh: int = 128
    scales: int = 3
    groups: int = 2
    ctx_hidden: int = 192
    syntax_dim: int = 32
    postfilter_channels: int = 16
    rate_modulation: bool = False  # hidden layers of g_a / g_s modulated by the quality (ratecond)
    analysis_blocks: int = 0  # residual blocks of g_a at each of 1/4, 1/8, 1/16 (encoder only)
    synthesis_blocks: int = 0  # residual blocks of g_s at each of 1/8, 1/4, 1/2 (decoder)
    synthesis_head: int = 0  # channels of g_s's full-resolution head (0: none; decoder)
    synthesis_channels: int = 0  # channels of g_s (0: N; decoder)
    lambdas: tuple[float, ...] = (0.0018, 0.0045, 0.011, 0.027, 0.067, 0.16)
    # Entropy-coding tables (built at export time, see adapix.entropy.tables).
    scale_min: float = 0.11
    scale_max: float = 256.0
    scale_levels: int = 64
    mean_step: float = 1.0 / 64.0
    symbol_max: int = 2048  # y symbols are clamped to [-symbol_max, symbol_max - 1]

    def __post_init__(self) -> None:
        ints = ("N", "M", "Nh", "scales", "groups", "ctx_hidden", "syntax_dim",
                "postfilter_channels", "scale_levels", "symbol_max")
        for name, low in [(n, 1) for n in ints] + [("analysis_blocks", 0), ("synthesis_blocks", 0),
                                                     ("synthesis_head", 0),
                                                     ("synthesis_channels", 0)]:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"model config: {name} must be an integer >= {low}, got {v!r}")
        if not isinstance(self.rate_modulation, bool):
            raise ValueError("model config: rate_modulation must be true or false")
        if self.scales < 2:
            raise ValueError("model config: scales must be >= 2")
        if self.M % self.groups:
            raise ValueError(f"model config: M ({self.M}) must be divisible by groups ({self.groups})")
        lams = self.lambdas
        if (not isinstance(lams, tuple) or len(lams) < 2
                or not all(isinstance(v, (int, float)) and v > 0 for v in lams)
                or list(lams) != sorted(lams)):
            raise ValueError("model config: lambdas must be >= 2 increasing positive numbers")
        if not 0 < self.scale_min < self.scale_max or self.scale_levels < 2:
            raise ValueError("model config: need 0 < scale_min < scale_max and scale_levels >= 2")
        step = self.mean_step
        if not (isinstance(step, float) and step > 0 and math.frexp(step)[0] == 0.5):
            raise ValueError("model config: mean_step must be a power of two")

    @property
    def Ns(self) -> int:
        """Channels of the synthesis transform g_s (``synthesis_channels``, or N when 0)."""
        return self.synthesis_channels or self.N

    @property
    def pad_multiple(self) -> int:
        """Images are padded to a multiple of this (16 for g_a, times 4 for h_a, times polyphase)."""
        return 16 * max(4, 2 ** (self.scales - 1))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        """From ``dataclasses.asdict`` of a config (as checkpoints store it); fields added since
        it was written take their defaults, unknown ones are an error."""
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        if "lambdas" in data:
            data["lambdas"] = tuple(data["lambdas"])
        return cls(**data)


TINY = ModelConfig(N=16, M=24, Nh=16, scales=3, groups=2, ctx_hidden=24, syntax_dim=8,
                   postfilter_channels=8)
"""A tiny configuration for unit tests (random weights, fast on CPU)."""
