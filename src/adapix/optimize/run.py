"""State of one optimisation: the clock and time budget, the best state by true cost, statistics."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

from ..model import CodingResult, Latents
from .cost import _lam, _sse255, rd_cost_of
from .proxy import ProxySynthesis, _detach


@dataclass
class _State:
    """A candidate: its latents (detached), true cost, estimated cost (tie-break), result."""

    lat: Latents
    cost: float
    est_cost: float
    result: CodingResult

    def better_than(self, other: "_State") -> bool:
        # The real size moves in 32-bit words per stream; the ideal code length breaks ties.
        return (self.cost, self.est_cost) < (other.cost, other.est_cost)


@dataclass
class OptimizeStats:
    """What :func:`optimize_latents_ex` did (for reports and tests). ``evaluations``: states
    compared by their true cost; ``codings``: the real coding passes behind them (one each, but
    :meth:`_Run.evaluate_both` codes once and compares two, the post-filter on and off)."""

    initial_cost: float = 0.0
    final_cost: float = 0.0
    iterations: int = 0
    evaluations: int = 0
    codings: int = 0
    greedy_tried: int = 0
    greedy_kept: int = 0
    greedy_flips: int = 0
    finetune_iters: int = 0
    seconds: float = 0.0
    stopped_by_budget: bool = False
    proxy_precision: str = ""       # precision of the proxy synthesis actually used
    iteration_seconds: float = 0.0  # mean seconds per gradient iteration
    eval_seconds: float = 0.0       # total seconds spent in true-cost evaluations
    history: list[tuple[str, int, float]] = field(default_factory=list)  # (stage, iter, cost)


@dataclass
class OptimizeOutcome:
    result: CodingResult
    latents: Latents
    stats: OptimizeStats


class _Run:
    """State shared by the stages of one optimisation: clock, best state, bookkeeping.

    ``clock`` (seconds, monotonic; default ``time.perf_counter``) can be replaced, e.g. by a fake
    clock in tests. ``eval_seconds`` and ``iter_seconds`` are the durations of the last true-cost
    evaluation and of the last gradient iteration, kept in reserve by the budget checks.
    ``lam`` is the trade-off of the asked quality position ``t``, fixed for the run; ``t`` is the
    position the image is coded at, which the quality mode decision may move
    (``Preset.quality_offsets``). ``bf16`` is the synthesis precision of the file (every true
    cost reconstructs as the decoder will).
    """

    def __init__(self, model, x, hw, t, postfilter, time_budget, progress,
                 clock: Callable[[], float] | None = None, bf16: bool = False):
        self.model, self.x, self.hw, self.t, self.postfilter = model, x, hw, float(t), postfilter
        self.bf16 = bool(bf16)
        self.lam = _lam(model, self.t)
        budget = None if time_budget is None else float(time_budget)
        self.budget = budget if budget is None or math.isfinite(budget) else None
        self.progress = progress
        self.clock = clock or time.perf_counter
        self.t0 = self.clock()
        self.eval_seconds = 0.0
        self.iter_seconds = 0.0
        self.iter_total = 0.0
        self.stats = OptimizeStats()
        self.best: _State | None = None
        self._synth: dict[tuple[str, bool], ProxySynthesis] = {}

    def elapsed(self) -> float:
        return self.clock() - self.t0

    def synthesis(self, precision: str) -> ProxySynthesis:
        """The proxy's synthesis for this image (built once per precision and post-filter
        flag)."""
        key = (precision, self.postfilter, self.t)
        if key not in self._synth:
            self._synth[key] = ProxySynthesis(self.model, self.t, self.postfilter, precision)
        synth = self._synth[key]
        self.stats.proxy_precision = synth.precision
        return synth

    def out_of_time(self, reserve: float = 0.0) -> bool:
        """True when the budget is spent, keeping ``reserve`` seconds (e.g. for a final eval)."""
        if self.budget is None:
            return False
        if self.elapsed() + reserve >= self.budget:
            self.stats.stopped_by_budget = True
            return True
        return False

    def evaluate(self, lat: Latents, stage: str, it: int,
                 postfilter: bool | None = None, t: float | None = None) -> _State:
        """Codes ``lat`` for real (with the run's post-filter flag and quality position unless
        ``postfilter`` or ``t`` is given); keeps it if it beats the best so far."""
        t1 = self.clock()
        lat = _detach(lat)
        pf = self.postfilter if postfilter is None else bool(postfilter)
        t = self.t if t is None else float(t)
        st = self._consider(lat, self.model.compress_latents(lat, t, pf, self.bf16), stage, it)
        self._timed(t1, states=1)
        return st

    def evaluate_both(self, lat: Latents, stage: str, it: int) -> tuple[_State, _State]:
        """Codes ``lat`` for real once, and considers it with the post-filter on (``stage``)
        and off (``stage + "-nopf"``), in that order: (with, without)."""
        t1 = self.clock()
        lat = _detach(lat)
        plain, post = self.model.compress_latents_both(lat, self.t, self.bf16)
        st = (self._consider(lat, post, stage, it), self._consider(lat, plain, stage + "-nopf", it))
        self._timed(t1, states=2)
        return st

    def _timed(self, t1: float, states: int) -> None:
        """Books one real coding pass, begun at ``t1``, that ``states`` states were compared from."""
        self.eval_seconds = self.clock() - t1  # kept in reserve by the budget checks
        self.stats.eval_seconds += self.eval_seconds
        self.stats.evaluations += states
        self.stats.codings += 1

    def _consider(self, lat: Latents, res: CodingResult, stage: str, it: int) -> _State:
        cost = rd_cost_of(self.model, res, self.x, self.hw, self.t, lam=self.lam)
        pixels = int(self.hw[0]) * int(self.hw[1])
        est = res.est_bits / pixels + self.lam * _sse255(res.x_hat, self.x, self.hw)
        st = _State(lat, cost, est, res)
        self.stats.history.append((stage, it, cost))
        if self.best is None or st.better_than(self.best):
            self.best = st
        if self.progress is not None:
            self.progress(stage, it, self.best.cost)
        return st
