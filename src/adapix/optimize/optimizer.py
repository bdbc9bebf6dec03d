"""Entry points of encoder-side optimisation: :func:`optimize_latents` and
:func:`optimize_latents_ex`."""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch

from ..model import AdapixModel, CodingResult, position_to_quality, quality_to_position
from .greedy import _greedy
from .phases import _finetune_encoder, _run_phase
from .presets import RANDOM_SEED, GreedySearch, Phase, Preset
from .proxy import _frozen
from .run import OptimizeOutcome, _Run


def optimize_latents_ex(model: AdapixModel, x: torch.Tensor, hw: tuple[int, int], t: float,
                        preset: Preset, time_budget: float | None = None,
                        progress: Callable[[str, int, float], None] | None = None,
                        postfilter: bool | None = None,
                        clock: Callable[[], float] | None = None,
                        choose_postfilter: bool = True,
                        choose_quality: bool = True, bf16: bool = False) -> OptimizeOutcome:
    """Like :func:`optimize_latents`, also returning the best latents and statistics.

    ``clock`` replaces ``time.perf_counter`` for the time budget (tests use a fake clock)."""
    with torch.inference_mode(False):  # gradients are needed even if the caller disabled them
        return _optimize(model, x, hw, t, preset, time_budget, progress, postfilter, clock,
                         choose_postfilter, choose_quality, bf16)


def _phase_deadlines(run: _Run, greedy: GreedySearch,
                     phases: tuple[Phase, ...]) -> list[float | None]:
    """Under a time budget: when each gradient phase should be over (seconds since the start).

    The ``phases`` that run (those of the preset for this image's quality) share the budget left
    after the start, minus the time share of the ``greedy`` search that follows them, in
    proportion to their iteration counts."""
    if run.budget is None or not math.isfinite(run.budget):
        return [None] * len(phases)
    share = greedy.time_share if greedy.enabled else 0.0
    end = run.budget * (1.0 - min(max(share, 0.0), 1.0))
    now = run.elapsed()
    total = sum(p.iters for p in phases)
    out, acc = [], 0
    for phase in phases:
        acc += phase.iters
        out.append(now + (end - now) * (acc / total if total else 1.0))
    return out


def _offset_positions(model: AdapixModel, t: float, offsets: tuple[float, ...]) -> list[float]:
    """The quality positions of the asked position t moved by ``offsets`` (quality units), each
    rounded to the header's 0.01 quality steps and kept within 0..100; t itself and repeats
    left out. What a decoder computes from the header's quality is exactly the same float."""
    cfg, q = model.cfg, position_to_quality(model.cfg, t)
    out: list[float] = []
    for off in offsets:
        qo = round(min(max(q + float(off), 0.0), 100.0), 2)
        to = quality_to_position(cfg, qo)
        if abs(qo - q) >= 0.005 and to not in out:
            out.append(to)
    return out


def _choose_quality(run: _Run, x: torch.Tensor, offsets: tuple[float, ...]) -> None:
    """Quality mode decision: codes the image's analysis at each offset quality, priced at the
    asked quality's lambda (``run.lam``); the run goes on at the position of the best state."""
    for to in _offset_positions(run.model, run.t, offsets):
        if run.out_of_time(reserve=run.eval_seconds):
            break
        with torch.no_grad():
            lat = run.model.analyse(x, torch.tensor([to]))
        run.evaluate(lat, f"quality{position_to_quality(run.model.cfg, to):.2f}", 0, t=to)
    run.t = float(run.best.result.t)


@functools.cache
def _warm_up_adam() -> None:
    """The first ``torch.optim.Adam`` of a process imports torch._dynamo (2.4-2.7 s on an AVX2
    EPYC core, scripts/cpu_check.py): a one-time start-up cost, paid up front (and counted in
    the time budget) rather than inside the first phase's first step, whose duration the
    budget checks use as the cost of a step."""
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def _optimize(model, x, hw, t, preset, time_budget, progress, postfilter,
              clock=None, choose_postfilter=True, choose_quality=True,
              bf16=False) -> OptimizeOutcome:
    postfilter = preset.postfilter if postfilter is None else bool(postfilter)
    x = x.detach().float().clone()  # a normal tensor, even if x was made in inference mode
    run = _Run(model, x, hw, t, postfilter, time_budget, progress, clock, bf16)  # clock starts
    lam = run.lam  # the asked quality's trade-off decides what runs
    phases = preset.phases_at(lam)
    finetune = preset.finetunes_at(lam)
    search = preset.greedy_at(lam)
    if phases or finetune:
        _warm_up_adam()  # inside the budget: a process's first encode pays it
    # The random relaxations (noise, SGA) draw from a fixed seed, so that an encode does not
    # depend on (nor disturb) the caller's random state: same input and settings, same bytes on
    # the same machine and thread count (float gradients may differ elsewhere; a time budget
    # that cuts the search short also makes the result depend on the machine's speed).
    with torch.random.fork_rng(devices=[]), _frozen(model):
        torch.manual_seed(RANDOM_SEED)
        with torch.no_grad():
            lat0 = model.analyse(x, torch.tensor([float(t)]))
        if postfilter and preset.postfilter_choice and choose_postfilter:
            # The post-filter does not suit every image: measure the start without it too (the
            # same streams), and optimise with the flag of lower true cost (run.best keeps it).
            run.evaluate_both(lat0, "start", 0)
            run.postfilter = run.best.result.postfilter
        else:
            run.evaluate(lat0, "start", 0)
        run.stats.initial_cost = run.best.cost
        offsets = preset.offsets_at(lam)
        if offsets and choose_quality and not run.out_of_time():
            _choose_quality(run, x, offsets)
        if not run.out_of_time():
            if finetune:
                _finetune_encoder(run, preset)
            deadlines = _phase_deadlines(run, search, phases)
            for phase, deadline in zip(phases, deadlines):
                if run.out_of_time(reserve=run.eval_seconds):
                    break
                _run_phase(run, phase, run.best.lat, deadline)
            if search.enabled and not run.out_of_time(reserve=run.eval_seconds):
                _greedy(run, search)
    run.stats.final_cost = run.best.cost
    run.stats.seconds = run.elapsed()
    if run.stats.iterations:
        run.stats.iteration_seconds = run.iter_total / run.stats.iterations
    return OptimizeOutcome(result=run.best.result, latents=run.best.lat, stats=run.stats)


def optimize_latents(model: AdapixModel, x: torch.Tensor, hw: tuple[int, int], t: float,
                     preset: Preset, time_budget: float | None = None,
                     progress: Callable[[str, int, float], None] | None = None,
                     postfilter: bool | None = None,
                     choose_postfilter: bool = True, choose_quality: bool = True,
                     bf16: bool = False) -> CodingResult:
    """Encoder-side RD optimisation of one image; returns the best CodingResult found.

    x (1, 3, Hp, Wp) padded image in [0, 1]; hw = (H, W) original size (the cost is measured on
    that region); t quality position; ``postfilter`` overrides ``preset.postfilter`` (the codec
    passes the effective flag). With ``preset.postfilter_choice`` and ``choose_postfilter``, an
    enabled post-filter may be turned off for this image (see :class:`Preset`); the result's
    ``postfilter`` is the flag to write into the file header. ``choose_postfilter=False`` keeps
    the flag as given (the tiles of one file share one flag). Likewise, with
    ``preset.quality_offsets`` and ``choose_quality`` the image may be coded at another quality
    position than t (priced at t's lambda); the result's ``t`` is the position to write into the
    header (as a quality, :func:`adapix.model.position_to_quality`).

    Starts from ``model.analyse(x, t)`` (or, below ``preset.finetune_max_lambda``, an analysis
    fine-tuned on the image, ``preset.encoder_finetune``),
    runs the gradient ``preset.phases`` that apply at the lambda of t (:attr:`Phase.min_lambda`)
    and then, if enabled, the greedy rounding search. The true
    cost (:func:`rd_cost_true`) decides which state is kept, so the result is never worse than
    :meth:`AdapixModel.compress`. ``time_budget`` (seconds, None = unlimited) stops the search
    gracefully (keeping one true-cost evaluation in reserve; the gradient phases share it, see
    :class:`Phase`); 0 returns the unoptimised result; ``math.inf`` is the same as None.
    ``progress(stage, iteration, best_cost)`` is called after every true-cost evaluation.
    ``bf16``: the synthesis precision of the file (:meth:`AdapixModel.synthesize`); every true
    cost reconstructs with it, as the decoder will.
    """
    return optimize_latents_ex(model, x, hw, t, preset, time_budget, progress, postfilter,
                               choose_postfilter=choose_postfilter,
                               choose_quality=choose_quality, bf16=bf16).result
