"""``adapix bench``: encode/decode speed, peak memory and decoder complexity. See ``--help``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import ArgError, RaisingParser, positive_int

PROG = "adapix bench"

DESCRIPTION = """\
Measure Adapix's encode and decode wall time (median of --runs runs after one uncounted warm-up,
in one process with --threads torch threads), its peak memory (each configuration once more in a
fresh process: peak resident memory above the baseline after imports and model load) and its decoder
complexity (kMAC per image pixel from torch's FlopCounterMode: convolutions and matrix products
only), for every --profiles at every --sizes. Two reference rows per size:

  adapix:synthesis  the synthesis transform alone on a latent of the same size: the floor a
                    parallel entropy model can approach
  mbt2018:qQ        CompressAI's mbt2018 (serial autoregressive context + hyperprior, Minnen et
                    al. 2018) with random weights (speed does not depend on training)

and two ratios per size: Adapix decode / synthesis only, and mbt2018 decode / Adapix decode
(fast profile). --bf16 times the Adapix rows with the synthesis in bfloat16 (files made with
`adapix encode --bf16`; rows named adapix:PROFILE+bf16). The test picture is synthetic and
deterministic (smooth shaded shapes, texture, noise) unless --image gives one (e.g. a Kodak
image, mirror-tiled or cropped to each size). Prints a markdown table; writes every number to
--out (JSON)."""

EPILOG = """\
examples:
  adapix bench                                  # 768x512 and 1920x1080, 5 runs, 2 threads
  adapix bench --sizes 256x256 --runs 2         # a quick look
  adapix bench --profiles all --sizes 768x512   # every encoder profile (slow)
  adapix bench --image data/kodak/kodim23.png --markdown results/bench.md
  adapix bench --large --threads 1 --image photo.jpg --sizes 2048x2048,10000x10000
                                                # peak memory against size (tiled coding)

mbt2018 needs CompressAI, installed WITHOUT its dependencies (they include torchvision and
torch-geometric, which would pull another torch build), plus its small import-time needs:
  pip install --no-deps compressai==1.2.8
  pip install -e '.[bench]'
The packages compressai imports only for unused features (torchvision, torch_geometric, pandas,
requests) are stubbed while it is imported. Without compressai the mbt2018 row is skipped with
the reason; --no-mbt skips it on purpose.

Only the fast profile is measured by default: profiles that optimise the latents per image
(balanced, best) take hundreds of decodes' worth of time per encode (many minutes per run at
1920x1080); add them with --profiles all (or a list), and bound them with --time-budget.
Run it on an otherwise idle machine: other load distorts every time.
exit status: 0 success, 1 a measurement failed or the model could not be loaded, 2 bad arguments."""


def _sizes(text: str):
    from adapix.bench import parse_sizes

    try:
        return parse_sizes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _quality(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 100.0:
        raise argparse.ArgumentTypeError(f"must be in 0..100, got {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _tile_sizes(text: str) -> tuple[int | None, ...]:
    from adapix.errors import AdapixError
    from adapix.tiling import check_tile_size

    out: list[int | None] = []
    for item in (t.strip().lower() for t in text.split(",") if t.strip()):
        if item == "auto":
            out.append(None)
            continue
        try:
            value = int(item)
            out.append(0 if value == 0 else check_tile_size(value))
        except (ValueError, AdapixError) as exc:
            raise argparse.ArgumentTypeError(f"bad tile size {item!r}: {exc}") from None
    if not out:
        raise argparse.ArgumentTypeError("no tile setting given (e.g. auto,0,1024)")
    return tuple(dict.fromkeys(out))


def build_parser() -> argparse.ArgumentParser:
    from adapix.bench import DEFAULT_MBT_QUALITY, DEFAULT_RUNS, DEFAULT_THREADS

    p = RaisingParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=_sizes, default=None, metavar="WxH,...",
                   help="image sizes (default: 768x512,1920x1080)")
    p.add_argument("--runs", type=positive_int, default=DEFAULT_RUNS, metavar="N",
                   help=f"timed runs per measurement, median reported (default {DEFAULT_RUNS}; "
                        "one more warm-up run is not counted)")
    p.add_argument("--threads", type=positive_int, default=DEFAULT_THREADS, metavar="N",
                   help=f"torch.set_num_threads (default {DEFAULT_THREADS})")
    p.add_argument("--profiles", default="fast", metavar="LIST",
                   help="comma-separated encoder profiles, or 'all' (default: fast)")
    p.add_argument("--model", default=None, metavar="FILE",
                   help="weights file (default: the shipped model)")
    p.add_argument("--image", default=None, metavar="FILE",
                   help="test picture instead of the synthetic one (tiled/cropped to each size)")
    p.add_argument("--quality", type=_quality, default=50.0, metavar="Q",
                   help="Adapix quality 0..100 (default 50)")
    p.add_argument("--time-budget", type=_seconds, default=None, metavar="SECONDS",
                   help="encoder-side optimisation budget for profiles that have one")
    p.add_argument("--no-mbt", action="store_true", help="skip the mbt2018 reference")
    p.add_argument("--mbt-quality", type=int, default=DEFAULT_MBT_QUALITY, choices=range(1, 9),
                   metavar="Q", help=f"mbt2018 zoo quality 1..8 (default {DEFAULT_MBT_QUALITY}: "
                                     "N=192, M=320)")
    p.add_argument("--mbt-runs", type=positive_int, default=None, metavar="N",
                   help="timed runs of mbt2018 (default: --runs); its serial decoder takes "
                        "minutes per run at 1920x1080")
    p.add_argument("--no-memory", action="store_true",
                   help="skip the peak-memory subprocesses")
    p.add_argument("--no-complexity", action="store_true", help="skip the kMAC/pixel count")
    p.add_argument("--bf16", action="store_true",
                   help="Adapix rows with the synthesis in bfloat16 (adapix encode --bf16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic picture and of "
                                                        "mbt2018's random weights (default 0)")
    large = p.add_argument_group(
        "large images (--large)",
        "instead of the speed table: peak memory and time of encoding (PNG -> .apx) and decoding "
        "(.apx -> PNG) against image size, each in a fresh process, one run per configuration; "
        "uses --sizes (default 1024x1024,2048x2048,4096x4096), --threads, --image (mirror-tiled "
        "to each size), --quality, --model and the first of --profiles")
    large.add_argument("--large", action="store_true", help="run the large-image benchmark")
    large.add_argument("--tile-sizes", type=_tile_sizes, default=(None,), metavar="LIST",
                       help="tile settings to compare: 'auto', 0 (never tile) or a tile size "
                            "(default: auto)")
    large.add_argument("--workdir", default=None, metavar="DIR",
                       help="where the pictures and coded files go (default: a new temporary "
                            "directory)")
    large.add_argument("--keep", action="store_true", help="keep the pictures and coded files")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="JSON output (default results/bench.json, with --large "
                        "results/bench-large.json; '-' or 'none': no file)")
    p.add_argument("--markdown", default=None, metavar="FILE", help="also write the table here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _error(message: str, status: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except ArgError as exc:
        return _error(str(exc), 2)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0

    from adapix.bench import DEFAULT_SIZES, BenchConfig, format_table, run_bench, write_json
    from adapix.profiles import PROFILES

    profiles = None  # all
    if args.profiles.strip().lower() != "all":
        profiles = tuple(p.strip() for p in args.profiles.split(",") if p.strip())
        unknown = [p for p in profiles if p not in PROFILES]
        if unknown or not profiles:
            return _error(f"--profiles: unknown profile {', '.join(map(repr, unknown)) or '(none)'}"
                          f" (available: {', '.join(PROFILES)})", 2)
    if args.model is not None and not Path(args.model).is_file():
        return _error(f"--model: no such file: {args.model}", 2)
    if args.image is not None and not Path(args.image).is_file():
        return _error(f"--image: no such file: {args.image}", 2)
    if args.large:
        return _main_large(args, profiles[0] if profiles else "fast")
    if args.out is None:
        args.out = "results/bench.json"
    cfg = BenchConfig(sizes=args.sizes or DEFAULT_SIZES, runs=args.runs, threads=args.threads,
                      profiles=profiles, model=args.model, image=args.image,
                      quality=args.quality, time_budget=args.time_budget, mbt=not args.no_mbt,
                      mbt_quality=args.mbt_quality, mbt_runs=args.mbt_runs,
                      memory=not args.no_memory, complexity=not args.no_complexity,
                      bf16=args.bf16,
                      seed=args.seed)

    from tqdm import tqdm

    from adapix.errors import AdapixError

    try:
        report = run_bench(cfg, progress=not args.no_progress,
                           log=lambda m: tqdm.write(f"{PROG}: {m}", file=sys.stderr))
    except AdapixError as exc:
        return _error(str(exc), 1)
    env = report.environment
    header = (f"Adapix bench: model {env.get('model_id', '?')}, torch {env.get('torch')}, "
              f"{env.get('threads')} threads, {env.get('cpu', '?')}, "
              f"load average at start {env.get('loadavg_at_start', '?')}")
    table = format_table(report.results, report.skipped)
    print(header + "\n\n" + table, end="")
    failed = _write_outputs(args.out, lambda out: write_json(report, out), args.markdown,
                            header + "\n\n" + table)
    if failed is not None:
        return failed
    return 0 if report.results and not _failures(report.skipped) else 1


def _write_outputs(out: str | None, write_json_to, markdown: str | None, text: str) -> int | None:
    """Writes the JSON (unless ``out`` is empty, "-" or "none") and the markdown table; returns
    an exit status on failure, None on success."""
    try:
        if out and out.lower() not in ("-", "none"):
            print(f"wrote {write_json_to(out)}")
        if markdown:
            md = Path(markdown)
            md.parent.mkdir(parents=True, exist_ok=True)
            md.write_text(text, encoding="utf-8")
            print(f"wrote {md}")
    except OSError as exc:
        return _error(f"cannot write output: {exc.strerror or exc}", 1)
    return None


def _main_large(args, profile: str) -> int:
    """``adapix bench --large``: see :mod:`adapix.bench.large`."""
    from tqdm import tqdm

    from adapix.bench.large import (DEFAULT_LARGE_SIZES, format_large_table,
                                    large_report_to_json, run_large)
    from adapix.errors import AdapixError

    try:
        report = run_large(args.sizes or DEFAULT_LARGE_SIZES, args.tile_sizes,
                           threads=args.threads, model=args.model, image=args.image,
                           quality=args.quality, profile=profile, workdir=args.workdir,
                           seed=args.seed, keep=args.keep,
                           log=None if args.no_progress else
                           (lambda m: tqdm.write(f"{PROG}: {m}", file=sys.stderr)))
    except AdapixError as exc:
        return _error(str(exc), 1)
    env = report.environment
    header = (f"Adapix bench --large: model {env.get('model_id', '?')}, profile {profile}, "
              f"quality {args.quality:g}, torch {env.get('torch')}, {args.threads} threads, "
              f"{env.get('cpu', '?')} ({env.get('cpu_count', '?')} cores), "
              f"load average at start {env.get('loadavg_at_start', '?')}")
    table = format_large_table(report.results, report.skipped)
    print(header + "\n\n" + table, end="")
    def write_json_to(out: str) -> Path:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(large_report_to_json(report) + "\n", encoding="utf-8")
        return path

    out = args.out if args.out is not None else "results/bench-large.json"
    failed = _write_outputs(out, write_json_to, args.markdown, header + "\n\n" + table)
    if failed is not None:
        return failed
    return 0 if report.results and not report.skipped else 1


def _failures(skipped: list[str]) -> list[str]:
    """The skips that are failures, not an optional part that is unavailable here."""
    return [s for s in skipped
            if not s.startswith("mbt2018: compressai") and not s.startswith("peak memory not")]


if __name__ == "__main__":
    sys.exit(main())
