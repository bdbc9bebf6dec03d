"""State of one optimisation: the clock and time budget, the best state by true cost, statistics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..model import CodingResult, Latents
from .cost import _lam, _sse255, rd_cost_true
from .proxy import _detach


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
    """What :func:`optimize_latents_ex` did (for reports and tests)."""

    initial_cost: float = 0.0
    final_cost: float = 0.0
    iterations: int = 0
    evaluations: int = 0
    greedy_tried: int = 0
    greedy_kept: int = 0
    greedy_flips: int = 0
    finetune_iters: int = 0
    seconds: float = 0.0
    stopped_by_budget: bool = False
    history: list[tuple[str, int, float]] = field(default_factory=list)  # (stage, iter, cost)


@dataclass
class OptimizeOutcome:
    result: CodingResult
    latents: Latents
    stats: OptimizeStats


class _Run:
    """State shared by the stages of one optimisation: clock, best state, bookkeeping."""

    def __init__(self, model, x, hw, t, postfilter, time_budget, progress):
        self.model, self.x, self.hw, self.t, self.postfilter = model, x, hw, float(t), postfilter
        self.budget = time_budget
        self.progress = progress
        self.t0 = time.perf_counter()
        self.eval_seconds = 0.0
        self.stats = OptimizeStats()
        self.best: _State | None = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def out_of_time(self, reserve: float = 0.0) -> bool:
        """True when the budget is spent, keeping ``reserve`` seconds (e.g. for a final eval)."""
        if self.budget is None:
            return False
        if self.elapsed() + reserve >= self.budget:
            self.stats.stopped_by_budget = True
            return True
        return False

    def evaluate(self, lat: Latents, stage: str, it: int) -> _State:
        """Codes ``lat`` for real; keeps it if it beats the best so far."""
        t1 = time.perf_counter()
        lat = _detach(lat)
        cost, res = rd_cost_true(self.model, lat, self.t, self.x, self.hw, self.postfilter)
        pixels = int(self.hw[0]) * int(self.hw[1])
        est = res.est_bits / pixels + _lam(self.model, self.t) * _sse255(res.x_hat, self.x, self.hw)
        st = _State(lat, cost, est, res)
        self.eval_seconds = time.perf_counter() - t1
        self.stats.evaluations += 1
        self.stats.history.append((stage, it, cost))
        if self.best is None or st.better_than(self.best):
            self.best = st
        if self.progress is not None:
            self.progress(stage, it, self.best.cost)
        return st
