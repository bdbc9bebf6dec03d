"""``adapix eval``: rate-distortion benchmark of Adapix and conventional codecs on a folder of images.

Also runnable as ``python -m adapix.cli.eval``. See ``adapix eval --help``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..eval.codecs.adapix_codec import DEFAULT_QUALITIES
from .common import ArgError, RaisingParser, positive_int

PROG = "adapix eval"

DESCRIPTION = """\
Encode and decode every PNG/JPEG image of DIR with every quality parameter of the chosen codecs,
measure bpp (from the real file bytes), RGB PSNR, MS-SSIM and encode/decode times, and write to --out:

  <codec>.json     curve per codec (dataset means per parameter; CompressAI's JSON format)
  per_image.csv    one row per codec, parameter and image
  rd_psnr.png      PSNR vs bpp (measured solid, reference curves dashed, 0-2 bpp)
  rd_msssim.png    MS-SSIM (dB) vs bpp
  bdrate.md        BD-rate / BD-PSNR of every curve against the anchor
  cache/*.jsonl    per-image results; a rerun only computes what is missing (resumable), or
                   what a change of the codec (weights, library, Adapix profile settings as they
                   apply at that quality) made out of date

Codecs whose library is missing are skipped with the reason; a failing codec does not stop others."""

EPILOG = """\
examples:
  adapix eval data/kodak --codecs jpeg444,webp,jxl,vvc --limit 2
  adapix eval data/kodak --codecs all --workers 2 --anchor vtm
  adapix eval --list

--reference: a folder of published curves (*.json, same format) to plot and to use as anchors,
  e.g. vtm.json -> --anchor vtm. Default "auto": <root>/reference/<name> when DIR is
  <root>/data/<name> and that folder exists; "none" disables reference curves.
--anchor: a measured codec name or a reference file/curve name (default: vtm if loaded, else the
  first measured codec).
exit status: 0 success, 1 a codec failed or nothing could be measured, 2 bad arguments."""


def build_parser() -> argparse.ArgumentParser:
    p = RaisingParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", nargs="?", metavar="DIR", help="folder of PNG/JPEG test images (e.g. Kodak)")
    p.add_argument("--codecs", default="all", metavar="LIST",
                   help="comma-separated codec names, or 'all' (default: all); see --list")
    p.add_argument("--out", default="results/eval", metavar="DIR", help="output folder (default: results/eval)")
    p.add_argument("--workers", type=positive_int, default=1, metavar="N",
                   help="parallel worker processes (default: 1 = run in this process)")
    p.add_argument("--reference", default="auto", metavar="DIR",
                   help="folder of published reference curves (*.json); 'auto' (default) or 'none'")
    p.add_argument("--anchor", default=None, metavar="NAME",
                   help="anchor of the BD-rate table: measured codec or reference name (default: vtm, "
                        "else the first measured codec)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="use only the first N images (sorted by file name)")
    p.add_argument("--adapix-weights", default=None, metavar="FILE",
                   help="weights file for the adapix codecs (default: the shipped model)")
    p.add_argument("--adapix-qualities", default=None, metavar="LIST",
                   help="qualities of the adapix codecs, e.g. 15,35,65,95 (default: "
                        f"{','.join(map(str, DEFAULT_QUALITIES))}); fewer points for the slow profiles")
    p.add_argument("--list", action="store_true", help="list the codecs, their availability and parameters, then exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _list_codecs(reference_dir: Path | None, adapix_options=None) -> None:
    from adapix.eval.codecs import CODECS, get_codecs

    print("codecs (name: status; parameter sweep; description):")
    for codec in get_codecs(list(CODECS), adapix_options):
        try:
            reason = codec.available()
        except Exception as exc:  # noqa: BLE001
            reason = f"availability check failed: {exc}"
        status = "available" if reason is None else f"unavailable: {reason}"
        try:
            params = ", ".join(str(p) for p in codec.params())
        except Exception:  # noqa: BLE001
            params = "?"
        print(f"  {codec.name:9s} {status}")
        print(f"  {'':9s} {codec.param_name} = [{params}]")
        print(f"  {'':9s} {codec.description}")
    print("  also: adapix:<profile> (the Adapix codec with a given profile), "
          "adapix:<profile>+bf16 (the same with its synthesis in bfloat16)")
    if reference_dir is not None:
        from adapix.eval.results import load_reference_curves

        curves, warn = load_reference_curves(reference_dir)
        print(f"reference curves in {reference_dir} (usable as --anchor):")
        for stem, c in curves.items():
            finite = [b for b in c.bpp if b == b]
            rng = f"{min(finite):.3f}-{max(finite):.3f} bpp" if finite else ""
            print(f"  {stem:45s} {c.name} ({len(c)} points, {rng})")
        for w in warn:
            print(f"  warning: {w}")


def _reference_dir(arg: str, images_dir: Path | None) -> Path | None:
    if arg.lower() == "none":
        return None
    if arg.lower() == "auto":
        if images_dir is None:
            return None
        from adapix.eval.runner import guess_reference_dir

        return guess_reference_dir(images_dir)
    path = Path(arg)
    if not path.is_dir():
        raise ArgError(f"reference folder {arg} does not exist")
    return path


def _adapix_options(args: argparse.Namespace):
    """``--adapix-weights`` (resolved: the path is part of the cache fingerprint) and
    ``--adapix-qualities`` as the :class:`~adapix.eval.codecs.AdapixOptions` of the run."""
    from adapix.eval.codecs import AdapixOptions

    weights = None
    if args.adapix_weights is not None:
        if not Path(args.adapix_weights).is_file():
            raise ArgError(f"weights file {args.adapix_weights} does not exist")
        weights = str(Path(args.adapix_weights).resolve())
    try:  # the options parse and check the qualities themselves
        return AdapixOptions(weights=weights, qualities=args.adapix_qualities)
    except ValueError as exc:
        raise ArgError(f"--adapix-qualities: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help
            return int(exc.code or 0) if isinstance(exc.code, int) else 0
        images_dir = Path(args.dir) if args.dir else None
        adapix_options = _adapix_options(args)
        if args.list:
            _list_codecs(_reference_dir(args.reference, images_dir), adapix_options)
            return 0
        if images_dir is None:
            raise ArgError("the image folder DIR is required (or use --list)")
        if not images_dir.is_dir():
            raise ArgError(f"image folder {images_dir} does not exist")
        reference_dir = _reference_dir(args.reference, images_dir)
        from adapix.eval.codecs import get_codecs

        try:
            get_codecs(args.codecs, adapix_options)
        except ValueError as exc:
            raise ArgError(str(exc)) from None
    except ArgError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2

    from adapix.eval.runner import run_eval

    if reference_dir is not None and args.reference.lower() == "auto":
        print(f"reference curves: {reference_dir}")
    try:
        report = run_eval(
            images_dir,
            args.codecs,
            out_dir=args.out,
            workers=args.workers,
            reference_dir=reference_dir,
            anchor=args.anchor,
            limit_images=args.limit,
            progress=not args.no_progress,
            adapix_options=adapix_options,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; finished results are cached in {Path(args.out) / 'cache'}", file=sys.stderr)
        return 130

    if report.table:
        print()
        print(report.table)
    print(f"computed {report.computed}, cached {report.cached}; wrote to {report.out_dir}: "
          + ", ".join(sorted(report.files)))
    if report.skipped:
        print("skipped: " + "; ".join(f"{k}: {v}" for k, v in report.skipped.items()))
    if not report.curves:
        print(f"{PROG}: no codec produced a curve", file=sys.stderr)
        return 1
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
