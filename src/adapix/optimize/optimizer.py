"""Entry points of encoder-side optimisation: :func:`optimize_latents` and
:func:`optimize_latents_ex`."""

from __future__ import annotations

from typing import Callable

import torch

from ..model import AdapixModel, CodingResult
from .greedy import _greedy
from .phases import _finetune_encoder, _run_phase
from .presets import RANDOM_SEED, Preset
from .proxy import _frozen
from .run import OptimizeOutcome, _Run


def optimize_latents_ex(model: AdapixModel, x: torch.Tensor, hw: tuple[int, int], t: float,
                        preset: Preset, time_budget: float | None = None,
                        progress: Callable[[str, int, float], None] | None = None,
                        postfilter: bool | None = None) -> OptimizeOutcome:
    """Like :func:`optimize_latents`, also returning the best latents and statistics."""
    with torch.inference_mode(False):  # gradients are needed even if the caller disabled them
        return _optimize(model, x, hw, t, preset, time_budget, progress, postfilter)


def _optimize(model, x, hw, t, preset, time_budget, progress, postfilter) -> OptimizeOutcome:
    postfilter = preset.postfilter if postfilter is None else bool(postfilter)
    x = x.detach().float().clone()  # a normal tensor, even if x was made in inference mode
    run = _Run(model, x, hw, t, postfilter, time_budget, progress)
    # The random relaxations (noise, SGA) draw from a fixed seed, so that an encode does not
    # depend on (nor disturb) the caller's random state: same input and settings, same bytes on
    # the same machine and thread count (float gradients may differ elsewhere; a time budget
    # that cuts the search short also makes the result depend on the machine's speed).
    with torch.random.fork_rng(devices=[]), _frozen(model):
        torch.manual_seed(RANDOM_SEED)
        with torch.no_grad():
            lat0 = model.analyse(x, torch.tensor([float(t)]))
        run.evaluate(lat0, "start", 0)
        run.stats.initial_cost = run.best.cost
        if not run.out_of_time():
            if preset.encoder_finetune and preset.finetune_iters > 0:
                _finetune_encoder(run, preset)
            for phase in preset.phases:
                if run.out_of_time(reserve=run.eval_seconds):
                    break
                _run_phase(run, phase, run.best.lat)
            if preset.greedy.enabled and not run.out_of_time(reserve=run.eval_seconds):
                _greedy(run, preset.greedy)
    run.stats.final_cost = run.best.cost
    run.stats.seconds = run.elapsed()
    return OptimizeOutcome(result=run.best.result, latents=run.best.lat, stats=run.stats)


def optimize_latents(model: AdapixModel, x: torch.Tensor, hw: tuple[int, int], t: float,
                     preset: Preset, time_budget: float | None = None,
                     progress: Callable[[str, int, float], None] | None = None,
                     postfilter: bool | None = None) -> CodingResult:
    """Encoder-side RD optimisation of one image; returns the best CodingResult found.

    x (1, 3, Hp, Wp) padded image in [0, 1]; hw = (H, W) original size (the cost is measured on
    that region); t quality position; ``postfilter`` overrides ``preset.postfilter`` (the codec
    passes the effective flag, which also goes into the file header).

    Starts from ``model.analyse(x, t)`` (or a fine-tuned analysis, ``preset.encoder_finetune``),
    runs the gradient ``preset.phases`` and then, if enabled, the greedy rounding search. The true
    cost (:func:`rd_cost_true`) decides which state is kept, so the result is never worse than
    :meth:`AdapixModel.compress`. ``time_budget`` (seconds, None = unlimited) stops the search
    gracefully (keeping one true-cost evaluation in reserve); 0 returns the unoptimised result.
    ``progress(stage, iteration, best_cost)`` is called after every true-cost evaluation.
    """
    return optimize_latents_ex(model, x, hw, t, preset, time_budget, progress, postfilter).result
