"""``python -m adapix.ablation``: train the ablation variants from the same seed on the same data,
then evaluate them (RD points, BD-rate against the anchor, decode time) and write the results.

Data flow::

    --data (image folder) -> load_images (downscaled to --max-side) -> for each variant:
        train_variant (same seed, same batches)      -> OUT/<variant>.pt
        rd_points on --eval-dir at --qualities       -> bpp (estimated), PSNR
        decode_timing on a --time-size picture       -> seconds, sequential steps
    BD-rate of every variant vs --anchor              -> OUT/ablation.json, OUT/ablation.md

Results are written after every variant, so an interrupted run keeps what it finished; running
the same command again resumes the training from the checkpoints (finished ones are reused).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

from ..bench.results import parse_size
from ..bench.timing import torch_threads
from ..cli.common import ArgError, RaisingParser, positive_int
from ..hardware import tune_allocator
from ..config import ModelConfig
from ..train.data import list_images, load_images
from .evaluate import decode_timing, load_eval_images, rd_points, timing_image
from .model import Variant
from .report import AblationReport, VariantResult, compute_bd, markdown, write_json
from .train import TrainSettings, train_variant
from .variants import count_parameters, effective_parameters

PROG = "python -m adapix.ablation"
DEFAULT_VARIANTS = "msp,hyperprior,serial,msp-nostream"
DEFAULT_STEPS = 1100

DESCRIPTION = f"""Ablation of the entropy model (docs/ablations.md): MSP against a hyperprior-only
model and a serial autoregressive context model (Minnen et al. 2018) of comparable size, and the
model stream on/off. Every variant is trained from the same seed on the same batches, then
evaluated: estimated bpp and PSNR per quality (BD-rate against --anchor) and decode time.

  {PROG} --steps 1100 --out runs/ablation     # ~8 min of training per variant on one core
  {PROG} --variants msp,serial --steps 200 --eval-images 4

Variants: msp, hyperprior, serial, each optionally with -nostream (model stream off).
Writes OUT/<variant>.pt (resumable checkpoints), OUT/ablation.json and OUT/ablation.md.
Keep the CPU light: --threads (default 1) sets torch's threads for training and timing."""


def build_parser() -> RaisingParser:
    p = RaisingParser(prog=PROG, description=DESCRIPTION,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated (default {DEFAULT_VARIANTS})")
    a("--anchor", default="msp", help="variant the BD-rates refer to (default msp)")
    a("--data", default="../shared/data/train", help="training image folder (recursive)")
    a("--eval-dir", default="../shared/data/kodak", help="evaluation image folder (e.g. Kodak)")
    a("--out", default="runs/ablation", help="output folder (default runs/ablation)")
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=positive_int, default=DEFAULT_STEPS,
                   help=f"training steps per variant (default {DEFAULT_STEPS})")
    g.add_argument("--batch", type=positive_int, default=8)
    g.add_argument("--crop", type=positive_int, default=128, help="a multiple of 64 (default 128)")
    g.add_argument("--lr", type=float, default=5e-4)
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast as the project trainer (default on)")
    g.add_argument("--threads", type=positive_int, default=1)
    g.add_argument("--max-side", type=positive_int, default=512,
                   help="training photos are downscaled to this short side (default 512)")
    g.add_argument("--train-images", type=positive_int, default=None,
                   help="use only the first K training images (default all)")
    g.add_argument("--ckpt-minutes", type=float, default=5.0)
    m = p.add_argument_group("model (adapix.config.ModelConfig)")
    for name, default in (("N", 64), ("M", 96), ("Nh", 64), ("ctx-hidden", 96), ("scales", 3),
                          ("groups", 2), ("syntax-dim", 32)):
        m.add_argument(f"--{name}", type=positive_int, default=default, help=f"(default {default})")
    e = p.add_argument_group("evaluation")
    e.add_argument("--qualities", default="10,30,50,70,90",
                   help="quality positions 0..100, comma-separated (default 10,30,50,70,90)")
    e.add_argument("--eval-images", type=positive_int, default=None, help="first K images only")
    e.add_argument("--time-size", default="768x512", help="WIDTHxHEIGHT of the timed decode")
    e.add_argument("--time-runs", type=positive_int, default=3, help="median of N runs (default 3)")
    e.add_argument("--no-timing", action="store_true", help="skip the decode-time measurement")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _variants(text: str) -> list[Variant]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ArgError("--variants: no variant given")
    try:
        out = [Variant.parse(t) for t in items]
    except ValueError as exc:
        raise ArgError(f"--variants: {exc}") from None
    names = [v.name for v in out]
    if len(set(names)) != len(names):
        raise ArgError(f"--variants: repeated variant in {text!r}")
    return out


def _qualities(text: str) -> list[float]:
    try:
        qs = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ArgError(f"--qualities: not a list of numbers: {text!r}") from None
    if len(qs) < 2 or len(set(qs)) != len(qs) or not all(0 <= q <= 100 for q in qs):
        raise ArgError(f"--qualities: need >= 2 distinct values in 0..100, got {text!r}")
    return sorted(qs)


def _check(args) -> tuple[ModelConfig, TrainSettings, list[Variant], list[float], tuple[int, int]]:
    """Validates everything before any work; ArgError with a one-line message."""
    variants = _variants(args.variants)
    if args.anchor not in [v.name for v in variants]:
        raise ArgError(f"--anchor {args.anchor!r} is not among --variants")
    try:
        cfg = ModelConfig(N=args.N, M=args.M, Nh=args.Nh, ctx_hidden=args.ctx_hidden,
                          scales=args.scales, groups=args.groups, syntax_dim=args.syntax_dim)
        size = parse_size(args.time_size)
    except ValueError as exc:
        raise ArgError(str(exc)) from None
    if args.crop % cfg.pad_multiple:
        raise ArgError(f"--crop must be a multiple of {cfg.pad_multiple}, got {args.crop}")
    if not (args.lr > 0 and args.ckpt_minutes > 0):
        raise ArgError("--lr and --ckpt-minutes must be positive")
    for flag, folder in (("--data", args.data), ("--eval-dir", args.eval_dir)):
        if not Path(folder).is_dir():
            raise ArgError(f"{flag}: image folder not found: {folder}")
    settings = TrainSettings(steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr,
                             seed=args.seed, bf16=args.bf16, threads=args.threads,
                             ckpt_minutes=args.ckpt_minutes)
    return cfg, settings, variants, _qualities(args.qualities), size


def run(args) -> int:
    cfg, settings, variants, qualities, (tw, th) = _check(args)
    progress = not args.no_progress
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = list_images(args.data)[: args.train_images]
    data = load_images(paths, settings.crop, args.max_side, progress)
    images = load_eval_images(Path(args.eval_dir), args.eval_images)
    timed = timing_image(images, tw, th)
    report = AblationReport(anchor=args.anchor, model_config=dataclasses.asdict(cfg), settings=settings,
                            train_data=args.data, train_images=len(data), eval_dir=args.eval_dir,
                            eval_images=len(images), qualities=qualities,
                            torch_version=torch.__version__,
                            created=time.strftime("%Y-%m-%dT%H:%M:%S"))
    print(f"{len(variants)} variant(s), {settings.steps} steps each, {len(data)} training images "
          f"({data.skipped} skipped), {len(images)} evaluation images", file=sys.stderr)
    for v in variants:
        model, summary = train_variant(v, cfg, settings, data, out, progress)
        with torch.no_grad(), torch_threads(settings.threads):
            points = rd_points(model, images, qualities, progress, desc=f"eval {v.name}")
        timing = None if args.no_timing else decode_timing(model, timed, runs=args.time_runs,
                                                           threads=settings.threads)
        report.variants.append(VariantResult(
            name=v.name, context=v.context, stream=v.stream,
            entropy_parameters=count_parameters(model.msp),
            entropy_parameters_effective=effective_parameters(model.msp),
            total_parameters=count_parameters(model), train=summary, points=points,
            timing=timing))
        _finish(report, out)
        print(f"{v.name}: {summary.steps} steps in {summary.seconds:.0f} s, "
              + ", ".join(f"q{p.quality:g} {p.bpp:.3f} bpp {p.psnr:.2f} dB" for p in points),
              file=sys.stderr)
    print(markdown(report), end="")
    print(f"wrote {out / 'ablation.json'} and {out / 'ablation.md'}", file=sys.stderr)
    return 0


def _finish(report: AblationReport, out: Path) -> None:
    """BD-rates against the anchor (when it is done), then the JSON and the markdown."""
    anchor = next((v for v in report.variants if v.name == report.anchor), None)
    for v in report.variants:
        v.bd_rate = compute_bd(anchor, v) if anchor is not None and v is not anchor else None
    write_json(report, out / "ablation.json")
    (out / "ablation.md").write_text(markdown(report))


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns 0 on success, 2 for bad arguments, 1 for other errors."""
    parser = build_parser()
    tune_allocator()  # large tensors from the heap, not mmap (adapix.hardware)
    try:
        args = parser.parse_args(argv)
        return run(args)
    except ArgError as exc:
        print(f"{PROG}: error: {exc} (see --help)", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; checkpoints and finished results are kept", file=sys.stderr)
        return 130


__all__ = ["main", "build_parser", "run"]
