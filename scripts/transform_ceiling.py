"""The transforms' ceiling: PSNR with y rounded (what is coded) against y left continuous, per quality.

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
import math
import sys
from pathlib import Path

import torch

from adapix.train.data import list_images, load_rgb
from adapix.weights import load_weights


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return -10 * math.log10(float(((a.clamp(0, 1) - b) ** 2).mean()))


def _positions(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or any(not math.isfinite(v) or v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positions >= 0, got {text!r}")
    return values


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", help="folder of PNG/JPEG images")
    p.add_argument("--weights", default=None, help="weights file (default: the shipped model)")
    p.add_argument("--positions", type=_positions, default=None,
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
    xs = []
    for path in list_images(a.images):
        rgb = load_rgb(path, None)
        if rgb is None or min(rgb.shape[:2]) < 64:
            continue
        x = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div(255)
        h, w = min(x.shape[1] // 64 * 64, 384), min(x.shape[2] // 64 * 64, 512)
        xs.append(x[:, :h, :w].unsqueeze(0))
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
                rounded.append(_psnr(out.x_hat, x))
                lat = model.analyse(x, tt)
                x_c = model.synthesize(lat.y, torch.round(lat.s), tt, postfilter=False)
                cont.append(_psnr(x_c, x))
            n = len(xs)
            print(f"t={t:<5g} {sum(bpp) / n:.3f} bpp  {sum(rounded) / n:.2f} dB  "
                  f"{sum(cont) / n:.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
