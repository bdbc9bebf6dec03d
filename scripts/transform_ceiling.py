"""The transforms' ceiling: PSNR with y rounded (what is coded) against y continuous, per quality.

    python scripts/transform_ceiling.py IMAGE_DIR [--weights FILE] [--positions LIST]
                                       [--fit-steps K] [--fit-report LIST] [--limit N]
                                       [--threads N]

For each quality position t (0 .. K-1, the lambda anchors; quality = 100 t / (K-1)), on every
image of IMAGE_DIR (cropped to a multiple of 64, at most 512x384 from the top left):

  rounded        x_hat of the training forward pass in eval mode (y rounded about the MSP means),
                 and its estimated bits per pixel;
  unquantised    g_s(y) with y = g_a(x) continuous and s rounded: what the synthesis could give
                 with no quantisation of y at all;
  y fitted       with --fit-steps K: the best PSNR of g_s(y) over K Adam steps on a continuous y
                 (starting at g_a(x), lr 0.02, MSE, the weights fixed): what the synthesis
                 itself can reach, with no encoder in the way. Close to "unquantised" means the
                 ceiling is the synthesis's, and a better encoder would not lift it.
                 --fit-report K1,K2,... also prints the mean best PSNR after K1, K2, ... steps
                 (how far the fit still climbs; each K at most --fit-steps).

--limit N keeps the first N images (a long fit costs about one g_s forward and backward a step).

When the rounded PSNR approaches the unquantised one at the top qualities, the rate-distortion
curve flattens there because of the transforms, not the entropy model.
"""

import argparse
import math
import sys

import torch

from latent_usage import add_common_arguments, open_inputs, psnr  # scripts/, beside this file


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(p, "0,1,2,4.75")
    p.add_argument("--fit-steps", type=int, default=0,
                   help="also fit y to each image by K Adam steps through g_s (default 0: no)")
    p.add_argument("--fit-report", type=str, default="",
                   help="step counts, e.g. 150,600: also print the fitted PSNR after each")
    p.add_argument("--limit", type=int, default=0, help="only the first N images (default: all)")
    a = p.parse_args(argv)
    if a.fit_steps < 0:
        print("error: --fit-steps must be >= 0", file=sys.stderr)
        return 2
    if a.limit < 0:
        print("error: --limit must be >= 0", file=sys.stderr)
        return 2
    try:
        report = sorted({int(k) for k in a.fit_report.split(",") if k.strip()})
    except ValueError:
        print(f"error: --fit-report must be step counts like 150,600, got {a.fit_report!r}",
              file=sys.stderr)
        return 2
    if report and not 0 < report[0] <= report[-1] <= a.fit_steps:
        print("error: --fit-report's step counts must lie in 1 .. --fit-steps", file=sys.stderr)
        return 2
    try:
        model, positions, xs = open_inputs(a, a.limit)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    fitted = ", PSNR y fitted" if a.fit_steps else ""
    print(f"{len(xs)} images; t: est. bpp, PSNR rounded, PSNR unquantised{fitted} (dB), "
          "means over images")
    model.requires_grad_(False)
    for t in positions:
        tt = torch.tensor([t])
        bpp, rounded, cont, fit, trace = [], [], [], [], []
        for x in xs:
            with torch.no_grad():
                out = model(x, tt)
                bpp.append(float(out.bits) / (x.shape[2] * x.shape[3]))
                rounded.append(psnr(out.x_hat, x))
                lat = model.analyse(x, tt)
                s = torch.round(lat.s)
                cont.append(psnr(model.synthesize(lat.y, s, tt, postfilter=False), x))
            if a.fit_steps:
                bests = fit_latent(model, x, lat.y, s, tt, a.fit_steps, report)
                fit.append(bests[-1])
                trace.append(bests[:-1])
        n = len(xs)
        extra = f"  {sum(fit) / n:.2f} dB" if fit else ""
        print(f"t={t:<5g} {sum(bpp) / n:.3f} bpp  {sum(rounded) / n:.2f} dB  "
              f"{sum(cont) / n:.2f} dB{extra}", flush=True)
        for i, k in enumerate(report):
            print(f"  y fitted, {k} steps: {sum(b[i] for b in trace) / n:.2f} dB", flush=True)
    return 0


def fit_latent(model, x: torch.Tensor, y0: torch.Tensor, s: torch.Tensor, t: torch.Tensor,
               steps: int, report: list[int] = ()) -> list[float]:
    """The best PSNR (dB) of g_s(y) over the first K steps for each K of ``report``, then over
    all ``steps`` (the last entry), of Adam steps on a continuous y (B, M, H/16, W/16) from
    ``y0``, minimising the MSE to x (1, 3, H, W) in [0, 1] with the model stream s and quality t
    fixed. The first step's PSNR is that of g_s(y0), so no entry is below it."""
    y = y0.clone().requires_grad_(True)
    opt = torch.optim.Adam([y], lr=0.02)
    best, bests = -math.inf, []
    for k in range(steps):
        x_hat = model.synthesize(y, s, t, postfilter=False)
        best = max(best, psnr(x_hat.detach(), x))
        if k + 1 in report:
            bests.append(best)
        mse = ((x_hat - x) ** 2).mean()
        opt.zero_grad()
        mse.backward()
        opt.step()
    return bests + [best]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
