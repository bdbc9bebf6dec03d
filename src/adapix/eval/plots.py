"""Rate-distortion plots (matplotlib, Agg backend): PSNR vs bpp and MS-SSIM (dB) vs bpp.

Measured codecs are drawn solid with markers, published reference curves dashed; x range 0..2 bpp
by default, y range fitted to the points inside the x range.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from .metrics import ms_ssim_db
from .results import Curve

__all__ = ["plot_rd", "plot_psnr", "plot_msssim"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_rd(
    curves: Sequence[Curve],
    path: str | Path,
    metric: str = "psnr",
    xlim: tuple[float, float] = (0.0, 2.0),
    title: str | None = None,
) -> Path | None:
    """Plot ``metric`` (``"psnr"`` or ``"ms-ssim"``, the latter in dB) against bpp; returns the path,
    or ``None`` if no curve has a point to draw (no file is written then)."""
    if metric not in ("psnr", "ms-ssim"):
        raise ValueError(f"unknown metric {metric!r}")
    series = []
    for c in curves:
        if metric == "psnr":
            ys = list(c.psnr)
        else:
            ys = [ms_ssim_db(v) for v in c.ms_ssim] if c.ms_ssim else []
        pts = [(x, y) for x, y in zip(c.bpp, ys) if x is not None and y is not None
               and math.isfinite(x) and math.isfinite(y)]
        if pts:
            pts.sort()
            series.append((c, pts))
    if not series:
        return None
    plt = _pyplot()
    n_legend = len(series)
    fig, ax = plt.subplots(figsize=(9 + (3.2 if n_legend > 6 else 0), 6.5), dpi=110)
    try:
        measured = [s for s in series if s[0].source == "measured"]
        refs = [s for s in series if s[0].source != "measured"]
        cmap_m = plt.get_cmap("tab10")
        cmap_r = plt.get_cmap("tab20b")
        in_range_y: list[float] = []
        for i, (c, pts) in enumerate(refs):
            xs, ys = zip(*pts)
            ax.plot(xs, ys, linestyle="--", linewidth=1.1, marker=".", markersize=3, alpha=0.75,
                    color=cmap_r(i % 20), label=f"{c.label} (ref)")
            in_range_y += [y for x, y in pts if xlim[0] <= x <= xlim[1]]
        for i, (c, pts) in enumerate(measured):
            xs, ys = zip(*pts)
            ax.plot(xs, ys, linestyle="-", linewidth=2.0, marker="o", markersize=4,
                    color=cmap_m(i % 10), label=c.label, zorder=3)
            in_range_y += [y for x, y in pts if xlim[0] <= x <= xlim[1]]
        ax.set_xlim(*xlim)
        if in_range_y:
            lo, hi = min(in_range_y), max(in_range_y)
            pad = max(0.5, 0.04 * (hi - lo))
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlabel("bits per pixel (bpp)")
        ax.set_ylabel("RGB PSNR (dB)" if metric == "psnr" else "MS-SSIM (dB) = -10 log10(1 - MS-SSIM)")
        if title:
            ax.set_title(title)
        ax.grid(True, which="major", alpha=0.4)
        ax.minorticks_on()
        ax.grid(True, which="minor", alpha=0.15)
        if n_legend > 6:  # many reference curves: legend outside, right of the axes
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, framealpha=0.9,
                      ncol=1 if n_legend <= 32 else 2)
        else:
            ax.legend(loc="lower right", fontsize=9, framealpha=0.85)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def plot_psnr(curves: Sequence[Curve], path: str | Path, **kw) -> Path | None:
    return plot_rd(curves, path, metric="psnr", **kw)


def plot_msssim(curves: Sequence[Curve], path: str | Path, **kw) -> Path | None:
    return plot_rd(curves, path, metric="ms-ssim", **kw)
