"""How much of the latent y a model uses, per quality: are all M channels needed?

    python scripts/latent_usage.py IMAGE_DIR [--weights FILE] [--positions LIST] [--old-M M]
                                  [--drop LIST] [--threads N]

On every image of IMAGE_DIR (cropped to a multiple of 64, at most 512x384 from the top left), at
each quality position t (0 .. K-1, the lambda anchors):

  mean |y|, share |y| >= 0.5   of the gained latent y = g_a(x) * gain(t) (B, M, H/16, W/16):
                               its size, and how often it is far enough from 0 to round away
                               from it (a channel that never is codes nothing);
  unquantised, weakest k% 0    PSNR of g_s(y) with y continuous (as scripts/transform_ceiling.py)
                               and with the k% of channels of least mean y**2 over the images
                               set to 0: what the weakest channels carry.

With ``--old-M``, for a model widened from M_old latent channels (adapix.widen), the first two
columns are given for the old channels and the new ones apart: whether training has put the new
channels to use.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

import torch

from adapix.entropy.factorized import round_ste
from adapix.train.data import list_images, load_rgb
from adapix.weights import load_weights
from adapix.widen import latent_index


def numbers(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}") from None
    if not values or any(not math.isfinite(v) or v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers >= 0, got {text!r}")
    return values


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return -10 * math.log10(float(((a.clamp(0, 1) - b) ** 2).mean()))


def load_crops(folder: str, limit: int = 0) -> list[torch.Tensor]:
    """The images of ``folder`` of at least 64x64, cropped to a multiple of 64 and at most 512x384
    from the top left, as (1, 3, H, W) in [0, 1] (also used by transform_ceiling.py); with
    ``limit`` > 0 only the first ``limit`` of them (no later file is read)."""
    xs = []
    for path in list_images(folder):
        if limit and len(xs) == limit:
            break
        rgb = load_rgb(path, None)
        if rgb is None or min(rgb.shape[:2]) < 64:
            continue
        x = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div(255)
        h, w = min(x.shape[1] // 64 * 64, 384), min(x.shape[2] // 64 * 64, 512)
        xs.append(x[:, :h, :w].unsqueeze(0))
    return xs


def _usage(ys: list[torch.Tensor], channels: torch.Tensor) -> str:
    size = sum(float(y[:, channels].abs().mean()) for y in ys) / len(ys)
    away = sum(float((y[:, channels].abs() >= 0.5).float().mean()) for y in ys) / len(ys)
    return f"{size:.3f} / {away:.3f}"


def add_common_arguments(p: argparse.ArgumentParser, example: str) -> None:
    """The images folder, --weights, --positions (``example`` in its help) and --threads (also
    used by transform_ceiling.py)."""
    p.add_argument("images", help="folder of PNG/JPEG images")
    p.add_argument("--weights", default=None, help="weights file (default: the shipped model)")
    p.add_argument("--positions", type=numbers, default=None,
                   help=f"quality positions t, e.g. {example} (default: every anchor, 0 .. K-1)")
    p.add_argument("--threads", type=int, default=1)


def open_inputs(a: argparse.Namespace, limit: int = 0):
    """(model in eval mode, positions, crops) for the parsed common arguments, with torch's
    threads set (``limit`` > 0: only the first ``limit`` crops, as in :func:`load_crops`);
    ValueError with the message for the user when they do not fit."""
    torch.set_num_threads(a.threads)
    if not Path(a.images).is_dir():
        raise ValueError(f"{a.images} is not a folder")
    model = load_weights(a.weights).model.eval()
    K = len(model.cfg.lambdas)
    positions = a.positions or [float(t) for t in range(K)]
    if max(positions) > K - 1:
        raise ValueError(f"this model's positions run from 0 to {K - 1}")
    xs = load_crops(a.images, limit)
    if not xs:
        raise ValueError(f"no image of at least 64x64 in {a.images}")
    return model, positions, xs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(p, "3,7")
    p.add_argument("--old-M", type=int, default=None,
                   help="the latent channels before widening: report old and new apart")
    p.add_argument("--drop", type=numbers, default=[10, 25],
                   help="percentages of the weakest channels to set to 0 (default 10,25)")
    a = p.parse_args(argv)
    try:
        model, positions, xs = open_inputs(a)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cfg = model.cfg
    if any(d > 100 for d in a.drop):
        print("error: --drop takes percentages up to 100", file=sys.stderr)
        return 2
    groups = [("all", torch.ones(cfg.M, dtype=torch.bool))]
    if a.old_M is not None:
        if not (0 < a.old_M < cfg.M and a.old_M % cfg.groups == 0):
            print(f"error: --old-M must be below M = {cfg.M} and divisible by its groups "
                  f"({cfg.groups})", file=sys.stderr)
            return 2
        old = torch.zeros(cfg.M, dtype=torch.bool)
        old[latent_index(dataclasses.replace(cfg, M=a.old_M), cfg)] = True
        groups = [("old", old), ("new", ~old)]
    names = " | ".join(f"{n}: mean |y| / share |y| >= 0.5" for n, _ in groups)
    drops = ", ".join(f"weakest {d:g}% 0" for d in a.drop)
    print(f"{len(xs)} images, M = {cfg.M}; t: {names} | PSNR unquantised, {drops} (dB)")
    with torch.no_grad():
        for t in positions:
            tt = torch.tensor([t])
            lats = [model.analyse(x, tt) for x in xs]
            ys = [lat.y for lat in lats]
            order = sum((y ** 2).mean(dim=(0, 2, 3)) for y in ys).argsort()
            psnrs = []
            for d in [0.0, *a.drop]:
                weakest = order[: int(round(d / 100 * cfg.M))]
                total = 0.0
                for x, lat in zip(xs, lats):
                    y = lat.y.clone()
                    y[:, weakest] = 0
                    total += psnr(model.synthesize(y, round_ste(lat.s), tt, False), x)
                psnrs.append(f"{total / len(xs):.2f}")
            usage = " | ".join(_usage(ys, ch) for _, ch in groups)
            print(f"t={t:g}\t{usage} | {' / '.join(psnrs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
