"""RD-cost change of one Adapix profile against another, per quality, from an `adapix eval` CSV.

The cost is the one the encoder optimises: bpp + lambda(q) * MSE on the 0..255 scale, with
lambda(q) from the shipped model's config (:meth:`AdapixModel.lam`); MSE from each image's PSNR.
Prints the mean and the range of the per-image changes at each quality, and the range of the
tested profile's encode times (seconds, from the CSV).

    python scripts/rd_cost_per_quality.py results/kodak-profiles-s6/per_image.csv adapix-balanced adapix-fast

``--anchor-csv`` takes the anchor's rows from another CSV, e.g. a repeat of the same profile
(how much two runs of a time-budgeted encoder differ):

    python scripts/rd_cost_per_quality.py results/kodak-balanced-repeat-s7/per_image.csv \
        adapix-balanced adapix-balanced --anchor-csv results/kodak-profiles-s7/per_image.csv
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
    p.add_argument("--anchor-csv", default=None,
                   help="read the anchor's rows from this CSV instead (default: the same CSV)")
    p.add_argument("--limit", type=int, default=None,
                   help="only the first N images (sorted by name)")
    args = p.parse_args(argv)
    model = Codec().model

    def read(path: str, codec: str, seconds: dict | None = None) -> dict[tuple[float, str], float]:
        out = {}
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                if r["codec"] != codec:
                    continue
                q = float(r["param"])
                lam = float(model.lam(torch.tensor([quality_to_position(model.cfg, q)]))[0])
                out[(q, r["image"])] = (float(r["bpp"])
                                        + lam * 255.0 ** 2 * 10 ** (-float(r["psnr"]) / 10))
                if seconds is not None:
                    seconds[(q, r["image"])] = float(r["enc_s"])
        return out

    enc: dict[tuple[float, str], float] = {}
    test = read(args.csv, args.codec, enc)
    anchor = read(args.anchor_csv or args.csv, args.anchor)
    if args.limit is not None:
        keep = sorted({k[1] for k in test} | {k[1] for k in anchor})[: args.limit]
        test = {k: v for k, v in test.items() if k[1] in keep}
    for q in sorted({k[0] for k in test}):
        ch = [100 * (test[(q, im)] / anchor[(q, im)] - 1)
              for (qq, im) in test if qq == q and (q, im) in anchor]
        s = [enc[k] for k in test if k[0] == q]
        if ch:
            print(f"q{q:g}: {np.mean(ch):+.2f}% mean over {len(ch)} images "
                  f"({min(ch):+.2f}% to {max(ch):+.2f}%); encode {min(s):.2f}-{max(s):.2f} s")
    s = [enc[k] for k in test]
    if s:
        print(f"{args.codec} encode: {min(s):.2f}-{max(s):.2f} s, mean {np.mean(s):.2f} s over "
              f"{len(s)} encodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
