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

import torch

from latent_usage import add_common_arguments, open_inputs, psnr  # scripts/, beside this file


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(p, "0,1,2,4.75")
    a = p.parse_args(argv)
    try:
        model, positions, xs = open_inputs(a)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
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
