"""What one step of the greedy search costs, and how far the float model's point is from the coded one.

On one training-photo crop (the 768x512 crops of ``scripts/tune_profiles.py``, never the
evaluation set), prints:

* the time of each part of a search step (median of 3 runs after a warm-up): the coding maps,
  the distortion gradient, the gradient and screening cost from one synthesis, a screening cost,
  the float MSP model alone, the synthesis alone, a true-cost evaluation, and the post-filter
  choice's paired evaluation;
* for y as the analysis gives it and for y moved to its coded lattice point
  (``adapix.optimize.greedy._lattice``): the share of elements that the float MSP model rounds
  to another integer than the coder, and the relative difference between the distortion
  gradient at the float model's point and at the coded point.

    python scripts/search_costs.py --quality 35 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_profiles import IMAGES, crop  # noqa: E402

from adapix.codec import Codec  # noqa: E402
from adapix.images import pad_to_multiple  # noqa: E402
from adapix.model import Latents, quality_to_position  # noqa: E402
from adapix.optimize import greedy as G  # noqa: E402
from adapix.optimize.proxy import _frozen  # noqa: E402
from adapix.optimize.run import _Run  # noqa: E402


def _median_seconds(f, runs: int = 3) -> float:
    f()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quality", type=float, default=35.0)
    p.add_argument("--image", type=int, default=0, help="index of the crop (0..2)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if not 0 <= args.image < len(IMAGES):
        print(f"error: --image must be in 0..{len(IMAGES) - 1}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    model = Codec().model
    t = quality_to_position(model.cfg, args.quality)
    xp, hw = pad_to_multiple(crop(IMAGES[args.image]), model.cfg.pad_multiple)
    run = _Run(model, xp.float(), hw, t, True, None, None)
    prec = "auto"
    with _frozen(model), torch.no_grad():
        lat = model.analyse(xp.float(), torch.tensor([float(t)]))
        _, z_hat = model.z_prior.compress(lat.z)
        feats = model.hyper_features(z_hat)
        mu, _, y_code, s_hat = G._coding_maps(model, lat)
        y_lat = G._lattice(lat.y, mu, model.cfg.symbol_max)
        parts = {
            "coding maps": lambda: G._coding_maps(model, lat),
            "distortion gradient": lambda: G._distortion_grad(run, y_code, s_hat, prec),
            "gradient + screening cost": lambda: G._grad_and_screen(run, feats, y_lat, s_hat,
                                                                    prec),
            "screening cost": lambda: G._screen_cost(run, feats, y_lat, s_hat, prec),
            "float MSP model": lambda: model.msp(feats.float(), y_lat, rate_mode="ste"),
            "synthesis": lambda: run.synthesis(prec)(y_code.float(), s_hat.float()),
            "true-cost evaluation": lambda: run.evaluate(lat, "start", 0),
            "paired evaluation (post-filter on, off)": lambda: run.evaluate_both(lat, "start", 0),
        }
        print(f"{IMAGES[args.image]} q{args.quality:g}, {args.threads} threads, "
              f"y {tuple(lat.y.shape)}; seconds (median of 3):")
        for name, f in parts.items():
            print(f"  {name:42s} {_median_seconds(f):.3f}")
        g_code = G._distortion_grad(run, y_code, s_hat, prec)
        for label, y in (("y from the analysis", lat.y), ("y on the coded lattice", y_lat)):
            y_float, _ = model.msp(feats.float(), y.float(), rate_mode="ste")
            other = float(((y_float.double() - y_code).abs() > 0.5).double().mean())
            g_float, _ = G._grad_and_screen(run, feats, y, s_hat, prec)
            rel = float((g_float - g_code).norm() / g_code.norm())
            print(f"{label}: {100 * other:.1f}% of the elements round otherwise in the float "
                  f"model; gradient at its point differs from the coded point's by {100 * rel:.0f}%")
        same = model.compress_latents(Latents(y=y_lat, z=lat.z, s=lat.s), t, True)
        ref = model.compress_latents(lat, t, True)
        print("lattice point codes the same streams:", same.streams == ref.streams)
    return 0


if __name__ == "__main__":
    sys.exit(main())
