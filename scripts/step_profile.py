"""Where a training step's time goes: forward, backward, gradient clipping and the optimiser.

    python scripts/step_profile.py [--config configs/default.toml] [--set KEY=VALUE ...]
                                   [--steps 20] [--warmup 3] [--images 64] [--ops 0]

Builds the trainer of ``adapix train`` from the same configuration (``--set`` as there, e.g.
``train.init=WEIGHTS`` to start from trained weights, ``train.threads=2``), then times ``--steps``
steps after ``--warmup`` untimed ones (torch.compile compiles in those) on random crops of the
first ``--images`` training photos, with the learning rate at 1e-6 so the weights barely move.
Prints iterations per second and the mean milliseconds of each part; ``--ops K`` adds
torch.profiler's K most expensive operators over 3 more steps (by self CPU time).

Nothing is written besides the trainer's output folder (``train.out``, default a temporary one).
Pause background training first (SIGSTOP), or both runs are slowed and the numbers mean little.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import torch

from adapix.train.config import load_run_config
from adapix.train.data import CropSampler, list_images, load_images
from adapix.train.loop import STEP_PARTS as PARTS, Trainer


def time_steps(trainer: Trainer, sampler: CropSampler, steps: int, warmup: int) -> dict:
    """{part: mean seconds} over ``steps`` training steps (``Trainer.train_step``, the step of
    ``adapix train``) after ``warmup`` untimed ones, and "total" (wall time per step)."""
    trainer.model.train()
    sums: dict[str, float] = {}
    start = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            sums, start = dict.fromkeys(PARTS, 0.0), time.perf_counter()
        trainer.train_step(sampler(), 1e-6, sums)
    out = {k: sums[k] / steps for k in PARTS}
    out["total"] = (time.perf_counter() - start) / steps
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/default.toml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, as in adapix train (repeatable)")
    p.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--images", type=int, default=64, help="training photos to crop (default 64)")
    p.add_argument("--ops", type=int, default=0, help="also list the K costliest operators")
    a = p.parse_args(argv)
    if a.steps < 1 or a.warmup < 0 or a.images < 1 or a.ops < 0:
        print("error: --steps and --images must be >= 1, --warmup and --ops >= 0", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        try:
            run = load_run_config(a.config, [f"train.out={tmp}", "train.val_every=0", *a.set])
            paths = list_images(run.train.data)[: a.images]
            if not paths:
                raise ValueError(f"no training images in {run.train.data}")
            trainer = Trainer(run, resume=False, progress=False)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        data = load_images(paths, run.train.crop, run.train.max_side, False)
        sampler = CropSampler(data, run.train.crop, run.train.batch,
                              torch.Generator().manual_seed(0))
        t = time_steps(trainer, sampler, a.steps, a.warmup)
        parts = ", ".join(f"{k} {t[k] * 1000:.1f} ms" for k in PARTS)
        print(f"{1 / t['total']:.3f} it/s (bf16 {trainer.bf16}, batch {run.train.batch} of "
              f"{run.train.crop}^2, {torch.get_num_threads()} threads): {parts}")
        if a.ops:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                time_steps(trainer, sampler, 3, 0)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.ops))
    return 0


if __name__ == "__main__":
    sys.exit(main())
