"""Reaching a target rate (bpp) or quality (PSNR) by bisection over the quality knob."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class TargetResult:
    quality: float
    bpp: float
    psnr: float
    met: bool               # the target is satisfied (bpp <= target, or psnr >= target)
    evaluations: int
    payload: Any = None     # third element returned by the encoder callable, if any


def encode_to_target(encode_at: Callable[[float], tuple], *, target_bpp: float | None = None,
                     target_psnr: float | None = None, lo: float = 0.0, hi: float = 100.0,
                     quality_tol: float = 0.25, bpp_rtol: float = 0.01,
                     psnr_tol: float = 0.05, max_evals: int = 12) -> TargetResult:
    """Bisection over the quality knob (0..100) to reach a target rate or PSNR.

    ``encode_at(quality)`` encodes at that quality and returns ``(bpp, psnr)`` or
    ``(bpp, psnr, payload)`` (e.g. the encoded bytes, handed back in ``TargetResult.payload``).
    Exactly one of ``target_bpp`` / ``target_psnr`` must be given.

    * ``target_bpp``: the highest quality whose bpp <= target (the file never exceeds the target);
    * ``target_psnr``: the lowest quality whose PSNR >= target (the image never falls short).

    Tolerance: the search stops once a feasible encode is within ``bpp_rtol`` (relative, 1%) of
    the bpp target or within ``psnr_tol`` dB (0.05) of the PSNR target, or when the quality
    bracket is narrower than ``quality_tol`` (0.25 quality units; headers store quality to 0.01),
    or after ``max_evals`` encodes. Rate and PSNR are assumed non-decreasing in quality (true up
    to small noise); the best feasible encode seen is returned. If even the end of the range is
    infeasible, that end is returned with ``met=False``.
    """
    if (target_bpp is None) == (target_psnr is None):
        raise ValueError("give exactly one of target_bpp and target_psnr")
    by_bpp = target_bpp is not None
    evals = 0

    def call(q: float) -> TargetResult:
        nonlocal evals
        evals += 1
        out = encode_at(q)
        bpp, psnr = float(out[0]), float(out[1])
        ok = bpp <= target_bpp if by_bpp else psnr >= target_psnr
        return TargetResult(q, bpp, psnr, ok, 0, out[2] if len(out) > 2 else None)

    def close(r: TargetResult) -> bool:
        if by_bpp:
            return r.met and r.bpp >= target_bpp * (1 - bpp_rtol)
        return r.met and r.psnr <= target_psnr + psnr_tol

    def better(a: TargetResult, b: TargetResult | None) -> bool:
        """a is a better feasible answer than b: more bits for the rate target, fewer for PSNR."""
        if b is None:
            return True
        return a.quality > b.quality if by_bpp else a.quality < b.quality

    # the feasible end: low quality for a rate target, high quality for a PSNR target
    first = call(lo if by_bpp else hi)
    if not first.met:
        first.evaluations = evals
        return first
    best = first
    if close(best):
        best.evaluations = evals
        return best
    other = call(hi if by_bpp else lo)
    if other.met:
        other.evaluations = evals
        return other  # the whole range is feasible: the best end
    a, b = lo, hi  # invariant: feasible side and infeasible side of the bracket
    feas, infeas = (a, b) if by_bpp else (b, a)
    while evals < max_evals and abs(infeas - feas) > quality_tol:
        mid = 0.5 * (feas + infeas)
        r = call(mid)
        if r.met:
            feas = mid
            if better(r, best):
                best = r
            if close(r):
                break
        else:
            infeas = mid
    best.evaluations = evals
    return best
