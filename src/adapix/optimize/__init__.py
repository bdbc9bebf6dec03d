"""Encoder-side, per-image rate-distortion optimisation ("online" RD optimisation, issue 5).

The decoder is a fixed function of the three coded streams, so the encoder is free to send *any*
latents it likes: searching, for one image, for the latents that minimise the true
rate-distortion cost changes neither the bitstream format nor the decoder. Every result of this
module is produced by :meth:`adapix.model.AdapixModel.compress_latents`, i.e. the real coding
path, and therefore decodes with any Adapix decoder holding the same weights.

Ideas, and where they come from:

* **Latent overfitting** (Campos et al., "Content adaptive optimization for neural image
  compression", CVPR workshops 2019; also Yang et al. 2020 below): starting from the
  amortised inference ``g_a(x)``, the continuous latents ``y`` (content), ``z`` (hyper) are refined
  by gradient descent on ``R + lambda * 255^2 * MSE`` for this one image, with the model weights
  frozen. The rate of the rounded latents is made differentiable by straight-through rounding
  (``rate_mode="ste"``), by additive uniform noise (``"noise"``) or by
  **stochastic Gumbel annealing** (``"sga"``; Yang, Bamler and Mandt, "Improving inference for
  neural image compression", NeurIPS 2020), which relaxes each rounding decision into a soft
  choice between floor and ceil whose temperature is annealed to zero.
* **Continuous mode decision / model stream**: the model stream ``s`` selects (through the weight
  generator) the image-specific last synthesis layer and post-filter, following the neural
  data-dependent transform of Wang et al., "Neural Data-Dependent Transform for Learned Image
  Compression", CVPR 2022. Optimising ``s`` jointly with ``y`` and ``z`` is the encoder's mode
  decision: it picks the decoder that best fits this image, at the price of its rate.
* **Greedy rounding search** (the rate-distortion optimised quantisation idea of video coders,
  applied to the rounding decisions that SGA relaxes): after the continuous search, rounding
  decisions of ``y`` that sit nearest a rounding boundary, and whose flip a first-order estimate
  predicts to pay off, are flipped to the other integer, chunk by chunk in MSP decoding order;
  a chunk is kept only if the *true* cost drops.
* **Encoder fine-tuning** (optional): the analysis transform ``g_a`` -- which the decoder never
  runs -- is fine-tuned on the image before the latent phases, giving a better starting point.

Costs. The optimisation uses a differentiable proxy (ideal code lengths of the un-snapped
Gaussian/factorized models, MSE in float). The *true* cost (:func:`rd_cost_true`) codes the
latents for real: ``8 * bytes of the three streams / pixels + lambda(t) * 255^2 * MSE`` of the
8-bit-rounded reconstruction on the original (un-padded) region. The true cost is evaluated at
the start, every ``Phase.eval_every`` iterations and at the end of every phase, and the best
state is kept, so the result is never worse (in true cost) than no optimisation. (The real size
moves in 32-bit ANS words per stream; among equal true costs the ideal code length decides.)

Shapes (padded image ``x`` (1, 3, Hp, Wp) in [0, 1], ``hw`` = original (H, W)):
``y`` (1, M, Hp/16, Wp/16), ``z`` (1, Nh, Hp/64, Wp/64), ``s`` (1, D).

Also here: :func:`encode_to_target`, a bisection over the quality knob that reaches a target
rate (bpp) or quality (PSNR) with any encoder callable.

Modules: :mod:`.presets` (Phase, GreedySearch, Preset), :mod:`.cost` (true RD cost),
:mod:`.proxy` (differentiable proxy), :mod:`.run` (state of one optimisation), :mod:`.phases`
(gradient stages), :mod:`.greedy` (rounding search), :mod:`.optimizer` (entry points),
:mod:`.target` (target rate/quality).
"""

from __future__ import annotations

# also importable from here, as from the former single module
from ..entropy.factorized import FactorizedPrior, round_ste  # noqa: F401
from ..entropy.gaussian import gaussian_likelihood  # noqa: F401
from ..entropy.msp import Step  # noqa: F401
from ..model import AdapixModel, CodingResult, Latents  # noqa: F401

from .cost import _crop, _lam, _sse255, measure, rd_cost_of, rd_cost_true, stream_bits
from .greedy import (_coding_maps, _distortion_grad, _element_bits, _greedy, _RecordingCoder,
                     _step_view)
from .optimizer import _optimize, optimize_latents, optimize_latents_ex
from .phases import _finetune_encoder, _run_phase
from .presets import LATENT_NAMES, RANDOM_SEED, RATE_MODES, GreedySearch, Phase, Preset
from .proxy import _detach, _factorized_bits, _frozen, _msp_sga, _relax, proxy_loss, sga_round
from .run import OptimizeOutcome, OptimizeStats, _Run, _State
from .target import TargetResult, encode_to_target


__all__ = ["Phase", "GreedySearch", "Preset", "rd_cost_true", "rd_cost_of", "measure",
           "stream_bits", "proxy_loss", "sga_round", "optimize_latents", "optimize_latents_ex", "OptimizeOutcome",
           "OptimizeStats", "encode_to_target", "TargetResult"]
