"""Probe (issue 5): would coding an image at a nearby quality q' lower its true RD cost at the
lambda of the asked quality q? On the training crops of ``tune_profiles.py`` (never Kodak).

For each quality q and offset d, the image is coded with ``fast`` at q + d (clamped to 0..100)
and its true cost (real stream bits per pixel + lambda(q) * 255^2 * MSE) is compared with coding
at q. Prints the mean change per offset and the per-image best offset's change ("oracle"): what
an encoder that tried those offsets and kept the cheapest would gain before any other
optimisation. The decoder reads the quality from the header, so such a choice is decodable.

    python scripts/quality_offset_probe.py --threads 2
"""

from __future__ import annotations

import argparse

import torch

import tune_profiles as tp
from adapix.codec import Codec
from adapix.images import pad_to_multiple
from adapix.model import quality_to_position
from adapix.optimize import rd_cost_of


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--qualities", default="39.285714,53.571429,75,96.428571")
    p.add_argument("--offsets", default="-6,-4,-2,-1,0,1,2,4,6")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = Codec().model
    offs = [int(d) for d in args.offsets.split(",")]
    if 0 not in offs:
        offs.append(0)
    for q in (float(v) for v in args.qualities.split(",")):
        t = quality_to_position(model.cfg, q)
        rel: dict[int, list[float]] = {d: [] for d in offs}
        oracle = []
        for name in tp.IMAGES:
            xp, hw = pad_to_multiple(tp.crop(name), model.cfg.pad_multiple)
            costs = {}
            with torch.no_grad():
                for d in offs:
                    q2 = min(100.0, max(0.0, q + d))
                    res = model.compress(xp, quality_to_position(model.cfg, q2))
                    costs[d] = rd_cost_of(model, res, xp, hw, t)  # at the asked quality's lambda
            for d in offs:
                rel[d].append(100 * (costs[d] / costs[0] - 1))
            oracle.append(100 * (min(costs.values()) / costs[0] - 1))
        print(f"q{q:g}: " + " ".join(f"{d:+d}: {sum(v) / len(v):+.2f}%" for d, v in rel.items())
              + f" | oracle {sum(oracle) / len(oracle):+.2f}% (per image "
              + " / ".join(f"{o:+.2f}" for o in oracle) + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
