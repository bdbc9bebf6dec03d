"""Encoder profiles: named balance points of compression efficiency against encoding time.

A profile is data (a dataclass holding an :class:`adapix.optimize.Preset`); its ``run`` codes
one padded image x (1,3,Hp,Wp) at quality position t and returns a
:class:`adapix.model.CodingResult`. Profiles only change what the *encoder* searches: the
bitstream format is the same and any decoder decodes every profile's files. Decoding cost never
depends on the profile (only the post-filter flag, stored in the file, adds a small filter at
the decoder).

* ``fast``: no online optimisation; encoding costs about one decode.
* ``balanced``: latent overfitting (Campos et al. 2019): one short Adam phase (80 iterations)
  on the latents y, z and the model stream s with straight-through rounding; costs roughly
  200 decodes' worth of compute (a forward and backward pass per iteration).
* ``best``: a longer phase (250 iterations), then the greedy search over rounding decisions
  (at most 48 extra codings), with the post-filter (used when the weights have a trained
  post-filter); roughly 700 decodes' worth.

Every optimising profile keeps the state of lowest *true* RD cost (real stream size + lambda *
255^2 * MSE of the 8-bit reconstruction), so it is never worse than ``fast`` at the same
quality, and it stops gracefully at ``time_budget`` seconds. See :mod:`adapix.optimize`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .errors import AdapixError
from .model import AdapixModel, CodingResult
from .optimize import GreedySearch, Phase, Preset, optimize_latents

FAST = Preset()

# Learning rates and iteration counts were chosen on a 256x256 crop of a training image
# (sun_hays80), never on the evaluation set; with only tens of iterations a fairly large Adam
# step (in quantisation steps of y) is needed, and straight-through rounding beat SGA and
# additive noise at these short budgets. Re-check them when the shipped model changes.
BALANCED = Preset(
    phases=(Phase("lof", iters=80, lr=0.05, rate_mode="ste", lr_final=0.1, eval_every=20),),
)

BEST = Preset(
    phases=(Phase("lof", iters=250, lr=0.05, rate_mode="ste", lr_final=0.05, eval_every=25),),
    greedy=GreedySearch(enabled=True, fraction=0.05, threshold=0.2, chunks=3, max_evals=48),
    postfilter=True,
)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    preset: Preset = field(default_factory=Preset)

    @property
    def postfilter(self) -> bool:
        """Whether the profile asks for the post-filter (effective only if it was trained)."""
        return self.preset.postfilter

    def run(self, model: AdapixModel, x: torch.Tensor, hw: tuple[int, int], t: float,
            postfilter: bool, time_budget: float | None = None) -> CodingResult:
        """Codes x (1,3,Hp,Wp) padded, original size hw, at quality position t.

        ``postfilter`` is the effective flag (the one written to the header). ``time_budget``
        (seconds, None = the preset's full effort) bounds the encoder-side optimisation.
        """
        if not self.preset.optimizes:
            return model.compress(x, t, postfilter=postfilter)
        return optimize_latents(model, x, hw, t, self.preset, time_budget=time_budget,
                                postfilter=postfilter)


PROFILES: dict[str, Profile] = {
    "fast": Profile("fast", "no online optimisation: encoding is about as fast as decoding", FAST),
    "balanced": Profile("balanced", "short per-image latent optimisation (80 gradient steps): a "
                        "better size/quality trade-off, much slower encoding",
                        BALANCED),
    "best": Profile("best", "long per-image optimisation (250 gradient steps, greedy rounding "
                    "search, post-filter): the best size/quality trade-off, the slowest "
                    "encoding",
                    BEST),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise AdapixError(f"unknown profile {name!r} (available: {', '.join(PROFILES)})") from None
