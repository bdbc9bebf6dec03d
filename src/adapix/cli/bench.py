"""``adapix bench``: encode/decode speed, peak memory and decoder complexity. See ``--help``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
(fast profile). The test picture is synthetic and deterministic (smooth shaded shapes, texture,
noise) unless --image gives one (e.g. a Kodak image, mirror-tiled or cropped to each size).
Prints a markdown table; writes every number to --out (JSON)."""

EPILOG = """\
examples:
  adapix bench                                  # 768x512 and 1920x1080, 5 runs, 2 threads
  adapix bench --sizes 256x256 --runs 2         # a quick look
  adapix bench --profiles all --sizes 768x512   # every encoder profile (slow)
  adapix bench --image data/kodak/kodim23.png --markdown results/bench.md

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


class _ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise _ArgError(message)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


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


def build_parser() -> argparse.ArgumentParser:
    from adapix.bench import DEFAULT_MBT_QUALITY, DEFAULT_RUNS, DEFAULT_THREADS

    p = _Parser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=_sizes, default=None, metavar="WxH,...",
                   help="image sizes (default: 768x512,1920x1080)")
    p.add_argument("--runs", type=_positive_int, default=DEFAULT_RUNS, metavar="N",
                   help=f"timed runs per measurement, median reported (default {DEFAULT_RUNS}; "
                        "one more warm-up run is not counted)")
    p.add_argument("--threads", type=_positive_int, default=DEFAULT_THREADS, metavar="N",
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
    p.add_argument("--mbt-runs", type=_positive_int, default=None, metavar="N",
                   help="timed runs of mbt2018 (default: --runs); its serial decoder takes "
                        "minutes per run at 1920x1080")
    p.add_argument("--no-memory", action="store_true",
                   help="skip the peak-memory subprocesses")
    p.add_argument("--no-complexity", action="store_true", help="skip the kMAC/pixel count")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic picture and of "
                                                        "mbt2018's random weights (default 0)")
    p.add_argument("--out", default="results/bench.json", metavar="FILE",
                   help="JSON output (default results/bench.json; '-' or 'none': no file)")
    p.add_argument("--markdown", default=None, metavar="FILE", help="also write the table here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _error(message: str, status: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except _ArgError as exc:
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
    cfg = BenchConfig(sizes=args.sizes or DEFAULT_SIZES, runs=args.runs, threads=args.threads,
                      profiles=profiles, model=args.model, image=args.image,
                      quality=args.quality, time_budget=args.time_budget, mbt=not args.no_mbt,
                      mbt_quality=args.mbt_quality, mbt_runs=args.mbt_runs,
                      memory=not args.no_memory, complexity=not args.no_complexity,
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
    try:
        if args.out and args.out.lower() not in ("-", "none"):
            path = write_json(report, args.out)
            print(f"wrote {path}")
        if args.markdown:
            md = Path(args.markdown)
            md.parent.mkdir(parents=True, exist_ok=True)
            md.write_text(header + "\n\n" + table, encoding="utf-8")
            print(f"wrote {md}")
    except OSError as exc:
        return _error(f"cannot write output: {exc.strerror or exc}", 1)
    return 0 if report.results and not _failures(report.skipped) else 1


def _failures(skipped: list[str]) -> list[str]:
    """The skips that are failures, not an optional part that is unavailable here."""
    return [s for s in skipped
            if not s.startswith("mbt2018: compressai") and not s.startswith("peak memory not")]


if __name__ == "__main__":
    sys.exit(main())
