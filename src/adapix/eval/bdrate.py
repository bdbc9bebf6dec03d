"""Bjøntegaard deltas (BD-rate, BD-PSNR) with the ``bjontegaard`` package and a markdown table.

Conventions: akima interpolation (piecewise cubic, no overshoot of the classic cubic fit), integration
over the overlap interval only (of the quality axis for BD-rate, of log-rate for BD-PSNR), rates in
bpp. Negative BD-rate = fewer bits than the anchor for the same quality.

Curves are cleaned before fitting: non-finite points and rates <= 0 are dropped, points are sorted by
rate, and points that do not improve quality over a cheaper point (non-monotonic curves, e.g. a codec
whose quality saturates) are dropped, leaving a strictly increasing rate-quality curve. When fewer
than two points remain, or the curves do not overlap, the result is ``nan`` with a reason.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .metrics import ms_ssim_db
from .results import Curve

__all__ = ["BDResult", "clean_curve", "bd_rate", "bd_psnr", "bd_rows", "bd_table", "METHOD"]

METHOD = "akima"


@dataclass
class BDResult:
    value: float  # percent for BD-rate, dB for BD-PSNR; nan when not computable
    reason: str | None = None  # why value is nan (None when it is a number)
    overlap: float = math.nan  # overlap of the integration axis / union of both ranges (0..1)
    dropped: int = 0  # points of the test curve dropped by cleaning (non-finite, non-monotonic)

    @property
    def ok(self) -> bool:
        return self.reason is None and math.isfinite(self.value)


def clean_curve(rate: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray, int]:
    """Finite points with rate > 0, sorted by rate, keeping only points that raise quality.

    Returns ``(rate, quality, n_dropped)``; both arrays are strictly increasing.
    """
    r = np.asarray(rate, dtype=np.float64).ravel()
    q = np.asarray(quality, dtype=np.float64).ravel()
    if r.shape != q.shape:
        raise ValueError(f"rate has {r.size} points, quality has {q.size}")
    n = r.size
    keep = np.isfinite(r) & np.isfinite(q) & (r > 0)
    r, q = r[keep], q[keep]
    order = np.lexsort((-q, r))  # by rate, best quality first among equal rates
    r, q = r[order], q[order]
    out_r, out_q = [], []
    best = -math.inf
    for ri, qi in zip(r, q):
        if qi > best and (not out_r or ri > out_r[-1]):
            out_r.append(ri)
            out_q.append(qi)
            best = qi
    return np.asarray(out_r), np.asarray(out_q), n - len(out_r)


def _overlap(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    union = max(a.max(), b.max()) - min(a.min(), b.min())
    frac = max(hi - lo, 0.0) / union if union > 0 else 0.0
    return lo, hi, frac


def _prepare(rate_anchor, q_anchor, rate_test, q_test):
    ra, qa, da = clean_curve(rate_anchor, q_anchor)
    rt, qt, dt = clean_curve(rate_test, q_test)
    if len(ra) < 2:
        return None, f"anchor has {len(ra)} usable point(s), needs 2", dt
    if len(rt) < 2:
        return None, f"test curve has {len(rt)} usable point(s), needs 2", dt
    return (ra, qa, rt, qt), None, dt


def _call(fn, *args) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(*args, method=METHOD, require_matching_points=False, min_overlap=0.0))


def _bd(kind: str, rate_anchor, quality_anchor, rate_test, quality_test) -> BDResult:
    """Shared body of bd_rate ("rate": overlap in quality) and bd_psnr ("psnr": overlap in log rate)."""
    try:
        import bjontegaard
    except ImportError as exc:
        return BDResult(math.nan, f"bjontegaard is not installed ({exc})")
    prep, reason, dropped = _prepare(rate_anchor, quality_anchor, rate_test, quality_test)
    if prep is None:
        return BDResult(math.nan, reason, dropped=dropped)
    ra, qa, rt, qt = prep
    if kind == "rate":
        fn, label = bjontegaard.bd_rate, "BD-rate"
        lo, hi, frac = _overlap(qa, qt)
        gap = f"no quality overlap (anchor {qa.min():.2f}..{qa.max():.2f}, test {qt.min():.2f}..{qt.max():.2f})"
    else:
        fn, label = bjontegaard.bd_psnr, "BD-PSNR"
        lo, hi, frac = _overlap(np.log10(ra), np.log10(rt))
        gap = (f"no rate overlap (anchor {ra.min():.3f}..{ra.max():.3f} bpp, "
               f"test {rt.min():.3f}..{rt.max():.3f} bpp)")
    if hi <= lo:
        return BDResult(math.nan, gap, 0.0, dropped)
    try:
        value = _call(fn, ra, qa, rt, qt)
    except Exception as exc:  # interpolation failures on degenerate data
        return BDResult(math.nan, f"{label} failed: {exc}", frac, dropped)
    if not math.isfinite(value):
        return BDResult(math.nan, f"{label} is not finite", frac, dropped)
    return BDResult(value, None, frac, dropped)


def bd_rate(rate_anchor: Sequence[float], quality_anchor: Sequence[float],
            rate_test: Sequence[float], quality_test: Sequence[float]) -> BDResult:
    """BD-rate (percent) of the test curve vs the anchor over their common quality interval."""
    return _bd("rate", rate_anchor, quality_anchor, rate_test, quality_test)


def bd_psnr(rate_anchor: Sequence[float], quality_anchor: Sequence[float],
            rate_test: Sequence[float], quality_test: Sequence[float]) -> BDResult:
    """BD-PSNR (or BD of any quality metric, in its unit) over the common log-rate interval."""
    return _bd("psnr", rate_anchor, quality_anchor, rate_test, quality_test)


@dataclass
class BDRow:
    curve: Curve
    is_anchor: bool
    rate_psnr: BDResult
    psnr: BDResult
    rate_msssim: BDResult


def _msssim_db(curve: Curve) -> list[float]:
    return [ms_ssim_db(v) for v in curve.ms_ssim] if curve.ms_ssim else []


def bd_rows(curves: Sequence[Curve], anchor: Curve) -> list[BDRow]:
    rows = []
    a_ms = _msssim_db(anchor)
    for c in curves:
        is_anchor = c is anchor
        c_ms = _msssim_db(c)
        if a_ms and c_ms and anchor.has_ms_ssim() and c.has_ms_ssim():
            r_ms = bd_rate(anchor.bpp, a_ms, c.bpp, c_ms)
        else:
            r_ms = BDResult(math.nan, "no MS-SSIM")
        rows.append(BDRow(c, is_anchor, bd_rate(anchor.bpp, anchor.psnr, c.bpp, c.psnr),
                          bd_psnr(anchor.bpp, anchor.psnr, c.bpp, c.psnr), r_ms))
    return rows


def _fmt(r: BDResult, unit: str, signed: bool = True) -> str:
    if not r.ok:
        return "n/a"
    return f"{r.value:+.2f}{unit}" if signed else f"{r.value:.2f}{unit}"


def bd_table(curves: Sequence[Curve], anchor: Curve, title: str | None = None, notes: Sequence[str] = ()) -> str:
    """Markdown table of BD-rate (PSNR and MS-SSIM dB) and BD-PSNR of every curve vs ``anchor``.

    Measured curves come first, then references; each group is sorted by BD-rate (n/a last).
    Reasons for n/a entries are listed under the table.
    """
    rows = bd_rows(curves, anchor)

    def key(row: BDRow):
        v = row.rate_psnr.value
        return (row.curve.source != "measured", not row.rate_psnr.ok, v if row.rate_psnr.ok else 0.0, row.curve.label)

    rows.sort(key=key)
    lines = []
    if title:
        lines += [f"# {title}", ""]
    lines.append(
        f"Anchor: **{anchor.label}** ({anchor.source}). BD-rate: negative = fewer bits than the anchor at equal "
        f"quality; {METHOD} interpolation over the overlap interval only; the overlap column is the common "
        "PSNR range as a fraction of the union of both ranges."
    )
    lines.append("")
    lines.append("| codec | source | images | points | bpp range | BD-rate (PSNR) | BD-PSNR | BD-rate (MS-SSIM dB) | overlap |")
    lines.append("|---|---|---:|---:|---|---:|---:|---:|---:|")
    footnotes: list[str] = []
    for row in rows:
        c = row.curve
        finite = [b for b in c.bpp if isinstance(b, float) and math.isfinite(b)]
        rng = f"{min(finite):.3f}–{max(finite):.3f}" if finite else "–"
        name = f"**{c.label}** (anchor)" if row.is_anchor else c.label
        n_img = str(c.n_images) if c.n_images else ("–" if c.source == "reference" else "?")
        overlap = f"{100 * row.rate_psnr.overlap:.0f}%" if math.isfinite(row.rate_psnr.overlap) else "–"
        lines.append(
            f"| {name} | {c.source} | {n_img} | {len(c)} | {rng} | {_fmt(row.rate_psnr, '%')} | "
            f"{_fmt(row.psnr, ' dB')} | {_fmt(row.rate_msssim, '%')} | {overlap} |"
        )
        for label, r in (("BD-rate (PSNR)", row.rate_psnr), ("BD-PSNR", row.psnr)):
            if not r.ok and r.reason:
                footnotes.append(f"- {c.label}: {label} n/a: {r.reason}")
        if not row.rate_msssim.ok and row.rate_msssim.reason and row.rate_msssim.reason != "no MS-SSIM":
            footnotes.append(f"- {c.label}: BD-rate (MS-SSIM) n/a: {row.rate_msssim.reason}")
        if row.rate_psnr.dropped:
            footnotes.append(f"- {c.label}: {row.rate_psnr.dropped} non-monotonic/invalid point(s) ignored")
    if footnotes or notes:
        lines.append("")
        lines.extend(list(notes))
        lines.extend(footnotes)
    return "\n".join(lines) + "\n"
