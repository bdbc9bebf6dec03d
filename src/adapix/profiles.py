"""Encoder profiles: named balance points of compression efficiency against encoding time.

A profile is data (a dataclass holding an :class:`adapix.optimize.Preset`); its ``run`` codes
one padded image x (1,3,Hp,Wp) at quality position t and returns a
:class:`adapix.model.CodingResult`. Profiles only change what the *encoder* searches: the
bitstream format is the same and any decoder decodes every profile's files. Decoding cost never
depends on the profile (only the post-filter flag, stored in the file, adds a small filter at
the decoder).

* ``fast``: no online optimisation; encoding costs about one decode.
* ``balanced``: the greedy search over the rounding decisions of the latents (the discrete
  half of latent overfitting, Campos et al. 2019; Yang et al. 2020), up to three passes over the
  MSP steps, finest scale first, three steps to a block, with the coding maps recomputed after
  every changed block, and
  the post-filter (the search optimises the post-filtered reconstruction); from the middle
  qualities up (lambda >= 0.027, quality 71.4 and above with the shipped model) gradient steps
  on y, z and s come first; below that, the quality decision (quality - 4 also tried) and 10
  steps fine-tuning the analysis transform (docs/ablations.md); 30 s default budget for a
  768x512 image.
* ``best``: from the middle qualities up (lambda >= 0.027, quality 71.4 and above with the
  shipped model) a gradient phase on y, z and s (continuous mode decision: s generates decoder
  weights) in 60% of the budget; below that, a quality mode decision (the image is also coded
  at quality - 4, priced at the asked quality's lambda, and the cheaper one goes on; the header
  carries the quality coded) and 60 steps fine-tuning the encoder (analysis, hyper-analysis
  and model-stream transforms) on the image (at most 60% of the budget; the stronger mode
  decision of Wang et al. 2022); then the greedy search (up to four passes; after the
  fine-tuning three, with a step's candidates in eight chunks); the post-filter (used when the
  weights have a trained post-filter); 120 s default budget for a 768x512 image.

Every optimising profile keeps the state of lowest *true* RD cost (real stream size + lambda *
255^2 * MSE of the 8-bit reconstruction), so it is never worse than ``fast`` at the same
quality, and it stops gracefully at ``time_budget`` seconds. Both optimising profiles choose
the post-filter per image (``Preset.postfilter_choice``): an image the filter does not suit is
coded without it. See :mod:`adapix.optimize`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from .errors import AdapixError
from .model import AdapixModel, CodingResult
from .optimize import GreedySearch, Phase, Preset, optimize_latents

FAST = Preset()

# Chosen with scripts/tune_profiles.py on 768x512 and 384x256 crops of training photos
# (../shared/data/train/sun_hays80), never on the evaluation set. With the 16 500-step model on an
# AVX-512 CPU, additive noise beat straight-through rounding and SGA for the gradient phase,
# moving y and s (the model stream) beat moving y alone, and the greedy search with the coding
# maps recomputed after every changed MSP step ("fresh") gave most of the gain; two fresh passes
# with the curvature term, without any gradient phase, gave the most (docs/ablations.md). With
# the 25 357-step model on an AVX2 CPU without bf16 (session 4), under the 30 s budget, the
# greedy search alone (chunks 3, verify every 8 steps, fresh, curvature) gave -0.63% BD-rate
# against fast where the earlier balanced preset (40 noise steps on y and s, then the search)
# gave -0.18%. In session 5 (same CPU, 2 free threads, the float32 channels_last proxy), the
# same search with the post-filter on gave -2.94% against -1.51% for the session-3 preset with
# the post-filter. In session 6, per quality: at qualities 85 and 95 noise steps on y, z and s
# (lr 0.15, the whole budget) cut the RD cost by 4.5% and 6.4% where the search cut it by 1.7%,
# and a 25% share left to the search after them did not add to that; at 65 and below the search
# won. So the gradient phase runs from quality 75 up, and below that the search has the whole
# budget. Re-check them when the shipped model or the machine changes.
# Session 10: the threshold is a lambda (Phase.min_lambda), the lambda of quality 75 on the
# six-anchor scale (0.0018 ... 0.16) those measurements used; on the shipped model's eight-anchor
# scale (0.0002 ... 0.16, from session 10) that lambda is quality 82.03.
_SEARCH = GreedySearch(enabled=True, fraction=0.3, threshold=0.5, chunks=3, verify_every=8,
                       fresh_maps=True, curvature=True, passes=2)
# Sessions 6-13: balanced's gradient phase ran from lambda 0.053 up (quality 82 with the shipped
# model); session 14 moved it down to MID_LAMBDA.

# Session 7: the MSP steps finest first (order="reverse") under the 30 s budget, which covers
# about 8 of the 14 steps of a 768x512 image: the finest scale holds 3/4 of the elements, and its
# flips change no other step's context. On the same crops, RD cost -2.13% against -1.38% at
# quality 65, the same at 15 and 35; 5 chunks a step instead of 3 added 0.0-0.15%.
# Session 8: the search's screening cost and gradient at the coded lattice (greedy._lattice), and
# 3 steps searched as one block (merge=3), up to 3 passes: on the same crops, -1.88% / -1.76% /
# -2.76% at quality 15 / 35 / 65 against -1.88% / -1.65% / -2.02% one step at a time; at 95, 20%
# of the budget left to the search after the gradient phase gave -6.43% against -6.02% with 10%.
#
# Session 14, the session-13 model on an AVX-512 EPYC (3 training crops, 30 s): below quality 82
# balanced's search ended after 15-18 s of its 30. Spending the rest, as best does with 120 s:
# the gradient phase from MID_LAMBDA (quality 71.4) up, and below it the quality decision and 10
# fine-tuning steps of g_a (lr 2e-4, at most half the budget): -4.72% BD-rate against fast where
# the session-11 preset gave -4.07% (RD cost -2.10 / -2.25 / -2.99 / -7.85% at quality 39.3 /
# 53.6 / 75 / 96.4 against -1.14 / -1.47 / -2.68 / -7.89%); docs/ablations.md, session 14.
MID_LAMBDA = 0.027
# What both optimising profiles do below MID_LAMBDA, before the search: the quality decision
# (quality - 4 also tried), then fine-tuning g_a (the steps, lr and share of the budget are each
# profile's own)
_BELOW_MID = dict(encoder_finetune=True, finetune_max_lambda=MID_LAMBDA,
                  quality_offsets=(-4.0,), quality_max_lambda=MID_LAMBDA)
BALANCED = Preset(
    phases=(Phase("lof", iters=60, lr=0.15, rate_mode="noise", optimize=("y", "z", "s"),
                  lr_final=0.1, eval_every=30, min_lambda=MID_LAMBDA),),
    # after the gradient phase, the search gets 20% of the budget
    greedy=replace(_SEARCH, order="reverse", chunks=5, merge=3, passes=3, time_share=0.2),
    postfilter=True, postfilter_choice=True,
    finetune_iters=10, finetune_lr=2e-4, finetune_share=0.5, **_BELOW_MID,
)

# Session 11: with 120 s the search alone runs out of candidates below the top (it stopped after
# 80-96 s on the crops), so `best`'s gradient phase starts lower, at lambda 0.027 (the anchor of
# quality 71.4; between 0.0088, where the phase bought nothing on the crops, and 0.034, where it
# paid), with balanced's learning rate and 40% of the budget left to the search: RD cost
# -4.76% / -9.31% against fast at quality 75 / 96.4 (the old preset: -3.28% / -9.13%).
# Session 12: below that lambda the search still ended after 59-66 s of the 120; 30 Adam steps
# on a copy of the analysis transform first (lr 1e-4) cut the RD cost by -2.65% / -3.06% at
# quality 39.3 / 53.6 against -1.77% / -2.18% for the search alone (docs/ablations.md,
# session 12). Session 13: the fine-tuning stops after half the budget at most (it took about
# 50 s of the 107-119 s encodes there), and runs only below MID_LAMBDA, where it was measured.
# Session 13, the session-13 model on an AVX-512 EPYC (bf16 proxies), the same crops, 120 s:
# this preset -2.45% / -3.06% at quality 39.3 / 53.6 (53-62 s an encode); with the quality
# mode decision (quality - 4 also tried, Preset.quality_offsets) -2.69% / -3.24% (5 of the 6
# crop points moved to quality - 4, better; 1 unchanged); 60 fine-tuning steps instead of 30
# did not add (docs/ablations.md, session 13).
# Session 15, the same model and CPU: on the 24 Kodak images that preset ended after 44-67 s
# below MID_LAMBDA. Latent phases there (noise or SGA, after the fine-tuning) never beat their
# start; fine-tuning h_a and the model stream's encoder with g_a added 0.3 / 0.16 points at
# quality 39.3 / 53.6, and 60 such steps (up to 60% of the budget, lr annealed to a tenth, the
# true cost every 20 steps) another 0.35 / 0.2: -3.37% / -3.62% against -2.69% / -3.24% on the
# crops (docs/ablations.md, session 15). Above MID_LAMBDA unchanged (fine-tuning before the
# noise phase there did not pay).
# Session 16: at the top the noise phase gains with more steps where the search cannot (quality
# 96.4, 3 crops: 200 steps, cut to 155-176 by the phase's 60% of the budget, -9.20% RD cost
# against fast, 100 steps -8.87%; at quality 75 200 steps bought 0.05 points in session 14), so
# from TOP_LAMBDA (the anchor of quality 85.7) up it runs 200 (docs/ablations.md, session 16).
# Kodak: RD cost -11.91% at quality 96.4 (100 steps: -11.47%); the BD-rate against fast did not
# move (-9.52% / -9.51%), as that point lies above fast's PSNR range (docs/results.md).
# Session 17: below MID_LAMBDA the search after the fine-tuning kept few of its chunks (each a
# third of a step's candidates, ~250-1200 flips at once; 0-14 of 168 kept on the crops), and its
# fourth pass repeated its third (nothing kept, same maps, same candidates:
# scripts/search_trace.py --blocks); those encodes ended after 75-104 s of the 120 on Kodak.
# A step's candidates in 8 chunks, 3 passes (cut by the budget): RD
# cost -4.04% / -4.25% against fast at quality 39.3 / 53.6 on the crops (4 passes of 3 chunks:
# -3.37% / -3.62%; 5 chunks: -3.49% / -4.18%); docs/ablations.md, session 17. Kodak: RD cost
# -5.12% / -5.45% there (was -4.40% / -4.75%), BD-rate -10.41% against fast (docs/results.md).
TOP_LAMBDA = 0.067
_NOISE = Phase("lof", iters=100, lr=0.15, rate_mode="noise", optimize=("y", "z", "s"),
               lr_final=0.1, eval_every=50, min_lambda=MID_LAMBDA, max_lambda=TOP_LAMBDA)
_BEST_SEARCH = replace(_SEARCH, passes=4, time_share=0.4)
BEST = Preset(
    phases=(_NOISE, replace(_NOISE, iters=200, min_lambda=TOP_LAMBDA, max_lambda=math.inf)),
    greedy=_BEST_SEARCH,
    postfilter=True, postfilter_choice=True,
    finetune_iters=60, finetune_lr=1e-4, finetune_lr_final=0.1, finetune_eval_every=20,
    finetune_share=0.6, finetune_modules=("g_a", "h_a", "syntax"), **_BELOW_MID,
    greedy_after_finetune=replace(_BEST_SEARCH, chunks=8, passes=3),
)


REFERENCE_PIXELS = 768 * 512  # the image size the profiles' time targets are stated for
BF16_SUFFIX = "+bf16"  # "<profile>+bf16": the profile with the synthesis in bfloat16 (eval, bench)


def split_bf16(name: str) -> tuple[str, bool]:
    """``"fast+bf16"`` -> ``("fast", True)``, ``"fast"`` -> ``("fast", False)`` (any case)."""
    if name.lower().endswith(BF16_SUFFIX):
        return name[:-len(BF16_SUFFIX)], True
    return name, False


@dataclass(frozen=True)
class Profile:
    """``time_budget``: the default budget in seconds for a 768x512 image (None: unbounded);
    larger images (or tiles) get it in proportion to their pixel count, smaller ones get it
    whole. An explicit budget passed to :meth:`run` replaces it (``math.inf``: no budget)."""

    name: str
    description: str
    preset: Preset = field(default_factory=Preset)
    time_budget: float | None = None

    def default_budget(self, hw: tuple[int, int]) -> float | None:
        """The default time budget for an image of original size hw = (H, W)."""
        if self.time_budget is None:
            return None
        return self.time_budget * max(1.0, int(hw[0]) * int(hw[1]) / REFERENCE_PIXELS)

    def at(self, lam: float) -> Profile:
        """The profile as it runs for an image asked at trade-off ``lam`` (:meth:`Preset.at`)."""
        return replace(self, preset=self.preset.at(lam))

    @property
    def postfilter(self) -> bool:
        """Whether the profile asks for the post-filter (effective only if it was trained)."""
        return self.preset.postfilter

    def run(self, model: AdapixModel, x: torch.Tensor, hw: tuple[int, int], t: float,
            postfilter: bool, time_budget: float | None = None,
            choose_postfilter: bool = True, choose_quality: bool = True,
            bf16: bool = False) -> CodingResult:
        """Codes x (1,3,Hp,Wp) padded, original size hw, at quality position t, reconstructing
        with the synthesis precision ``bf16`` (the header's flag).

        ``postfilter``: whether the post-filter may be used; the result's ``postfilter`` is the
        flag to write into the header (a profile with ``preset.postfilter_choice`` turns it off
        for an image it does not suit, unless ``choose_postfilter`` is False; one with
        ``preset.quality_offsets`` may code at another quality, the result's ``t``, unless
        ``choose_quality`` is False). ``time_budget``
        (seconds) bounds the encoder-side optimisation; None = the profile's default
        (:meth:`default_budget`), ``math.inf`` = the preset's full effort whatever it takes.
        """
        if not self.preset.optimizes:
            return model.compress(x, t, postfilter=postfilter, bf16=bf16)
        budget = self.default_budget(hw) if time_budget is None else time_budget
        return optimize_latents(model, x, hw, t, self.preset, time_budget=budget,
                                postfilter=postfilter, choose_postfilter=choose_postfilter,
                                choose_quality=choose_quality, bf16=bf16)


PROFILES: dict[str, Profile] = {
    "fast": Profile("fast", "no online optimisation: encoding is about as fast as decoding", FAST),
    "balanced": Profile("balanced", "per-image greedy search over the latents' rounding "
                        "decisions (after gradient steps from middle qualities up, below them "
                        "a quality decision and a short fine-tuning of the analysis "
                        "transform), post-filter (30 s per 768x512 image): a better "
                        "size/quality trade-off, much slower encoding",
                        BALANCED, time_budget=30.0),
    "best": Profile("best", "long per-image optimisation (from middle qualities up, gradient "
                    "steps on latents and model stream, below them a quality decision and "
                    "the encoder's transforms fine-tuned on the image; up to four greedy "
                    "rounding passes; "
                    "post-filter; 120 s per 768x512 image): the best size/quality trade-off, "
                    "the slowest encoding",
                    BEST, time_budget=120.0),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise AdapixError(f"unknown profile {name!r} (available: {', '.join(PROFILES)})") from None
