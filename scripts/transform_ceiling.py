"""The transforms' ceiling: PSNR with y rounded (what is coded) against y continuous, per quality.

    python scripts/transform_ceiling.py IMAGE_DIR [--weights FILE] [--positions LIST]

For each quality position t (0 .. K-1, the lambda anchors; quality = 100 t / (K-1)), on every
image of IMAGE_DIR (cropped to a multiple of 64, at most 512x384 from the top left):

  rounded        x_hat of the training forward pass in eval mode (y rounded about the MSP means),
                 and its estimated bits per pixel;
  unquantised    g_s(y) with y = g_a(x) continuous and s rounded: what the synthesis could give
                 with no quantisation of y at all.

When the rounded PSNR approaches the unquantised one at the top qualities, the rate-distortion
curve flattens there because of the transforms, not the entropy model.
"""

import argparse
import sys
from pathlib import Path

import torch

from adapix.weights import load_weights
from latent_usage import load_crops, numbers, psnr  # scripts/, beside this file


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", help="folder of PNG/JPEG images")
    p.add_argument("--weights", default=None, help="weights file (default: the shipped model)")
    p.add_argument("--positions", type=numbers, default=None,
                   help="quality positions t, e.g. 0,1,2,4.75 (default: every anchor, 0 .. K-1)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if not Path(a.images).is_dir():
        print(f"error: {a.images} is not a folder", file=sys.stderr)
        return 2
    model = load_weights(a.weights).model.eval()
    K = len(model.cfg.lambdas)
    positions = a.positions or [float(t) for t in range(K)]
    if max(positions) > K - 1:
        print(f"error: this model's positions run from 0 to {K - 1}", file=sys.stderr)
        return 2
    xs = load_crops(a.images)
    if not xs:
        print(f"error: no image of at least 64x64 in {a.images}", file=sys.stderr)
        return 2
    print(f"{len(xs)} images; t: est. bpp, PSNR rounded, PSNR unquantised (dB), means over images")
    with torch.no_grad():
        for t in positions:
            tt = torch.tensor([t])
            bpp, rounded, cont = [], [], []
            for x in xs:
                out = model(x, tt)
                bpp.append(float(out.bits) / (x.shape[2] * x.shape[3]))
                rounded.append(psnr(out.x_hat, x))
                lat = model.analyse(x, tt)
                x_c = model.synthesize(lat.y, torch.round(lat.s), tt, postfilter=False)
                cont.append(psnr(x_c, x))
            n = len(xs)
            print(f"t={t:<5g} {sum(bpp) / n:.3f} bpp  {sum(rounded) / n:.2f} dB  "
                  f"{sum(cont) / n:.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
