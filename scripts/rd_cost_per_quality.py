"""RD-cost change of one Adapix profile against another, per quality, from an `adapix eval` CSV.

The cost is the one the encoder optimises: bpp + lambda(q) * MSE on the 0..255 scale, with
lambda(q) from the shipped model's config (:meth:`AdapixModel.lam`); MSE from each image's PSNR.
Prints the mean and the range of the per-image changes at each quality.

    python scripts/rd_cost_per_quality.py results/kodak-profiles-s6/per_image.csv adapix-balanced adapix-fast
"""

from __future__ import annotations

import argparse
import csv
import sys

import numpy as np
import torch

from adapix.codec import Codec
from adapix.model import quality_to_position


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("csv", help="per_image.csv written by adapix eval")
    p.add_argument("codec", help="e.g. adapix-balanced")
    p.add_argument("anchor", help="e.g. adapix-fast")
    p.add_argument("--limit", type=int, default=None,
                   help="only the first N images (sorted by name)")
    args = p.parse_args(argv)
    model = Codec().model
    cost: dict[tuple[str, float, str], float] = {}
    with open(args.csv, newline="") as f:
        for r in csv.DictReader(f):
            q = float(r["param"])
            lam = float(model.lam(torch.tensor([quality_to_position(model.cfg, q)]))[0])
            cost[(r["codec"], q, r["image"])] = (float(r["bpp"])
                                                 + lam * 255.0 ** 2 * 10 ** (-float(r["psnr"]) / 10))
    if args.limit is not None:
        keep = sorted({k[2] for k in cost})[: args.limit]
        cost = {k: v for k, v in cost.items() if k[2] in keep}
    for q in sorted({k[1] for k in cost if k[0] == args.codec}):
        ch = [100 * (cost[(args.codec, q, im)] / cost[(args.anchor, q, im)] - 1)
              for (c, qq, im) in cost if c == args.codec and qq == q and (args.anchor, q, im) in cost]
        if ch:
            print(f"q{q:g}: {np.mean(ch):+.2f}% mean over {len(ch)} images "
                  f"({min(ch):+.2f}% to {max(ch):+.2f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
