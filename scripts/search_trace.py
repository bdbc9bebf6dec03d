"""When the encoder-side optimisation finds its gains: the true RD cost over time for one preset.

Codes training-photo crops (the same 768x512 crops as ``scripts/tune_profiles.py``, never the
evaluation set) with one configuration (a name that ``tune_profiles.py`` parses) and prints every
true-cost evaluation: seconds since the start, stage, and the best cost so far. For example, how
far the greedy search gets in a 30 s budget, or how long one full pass takes without a budget:

    python scripts/search_trace.py --quality 35 --budget none \\
        --config "+greedy-f0.3-t0.5-c3-v8-fresh-curv-p4+pf"

``--blocks`` also prints, for every block of the greedy search that has candidates, how many
and in how many chunks they are tried (e.g. to see a pass that repeats the one before it):

    python scripts/search_trace.py --quality 53.571429 --budget 120 --config best-s16 --blocks
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_profiles import IMAGES, crop, parse_config  # noqa: E402

from adapix.codec import Codec  # noqa: E402
from adapix.images import pad_to_multiple  # noqa: E402
from adapix.model import quality_to_position  # noqa: E402
from adapix.optimize import greedy, optimize_latents_ex  # noqa: E402


@contextlib.contextmanager
def trace_blocks(points: list | None):
    """While inside, records (seconds, candidates, chunks) for every block the search tries into
    ``points`` (a wrapper around the search's chunking, diagnostic only, removed on exit; None:
    nothing is traced)."""
    if points is None:
        yield
        return
    chunks = greedy._Flips.chunks

    def traced(self, n: int):
        out = chunks(self, n)
        points.append((time.perf_counter(), len(self), len(out)))
        return out

    with mock.patch.object(greedy._Flips, "chunks", traced):
        yield


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="a configuration name (tune_profiles.py)")
    p.add_argument("--quality", type=float, default=35.0)
    p.add_argument("--budget", default="30", help="seconds, or 'none'")
    p.add_argument("--images", type=int, default=1, help="use the first N photos")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--blocks", action="store_true",
                   help="also print the search's candidates and chunks per block")
    args = p.parse_args(argv)
    try:
        preset = parse_config(args.config)
        budget = None if args.budget == "none" else float(args.budget)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    model = Codec().model
    t = quality_to_position(model.cfg, args.quality)
    blocks: list = []
    with trace_blocks(blocks if args.blocks else None):
        return _trace(model, t, preset, budget, args, blocks)


def _trace(model, t: float, preset, budget: float | None, args, blocks: list) -> int:
    for name in IMAGES[: args.images]:
        xp, hw = pad_to_multiple(crop(name), model.cfg.pad_multiple)
        t0 = time.perf_counter()
        points = []
        blocks.clear()

        def progress(stage: str, it: int, cost: float) -> None:
            points.append((time.perf_counter() - t0, stage, it, cost))

        out = optimize_latents_ex(model, xp, hw, t, preset, time_budget=budget,
                                  progress=progress)
        s = out.stats
        print(f"{name} q{args.quality:g} {args.config}: cost {s.initial_cost:.5f} -> "
              f"{s.final_cost:.5f} ({100 * (s.final_cost / s.initial_cost - 1):+.2f}%) in "
              f"{s.seconds:.1f} s; {s.evaluations} evaluations ({s.codings} codings), {s.greedy_tried} chunks tried")
        for sec, stage, it, cost in points:
            print(f"  {sec:7.1f} s  {stage:<12} {it:4d}  best {cost:.5f}")
        for k, (at, n, c) in enumerate(blocks):
            print(f"  {at - t0:7.1f} s  block {k:3d}: {n:5d} candidates in {c} chunks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
