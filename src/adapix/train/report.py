"""``python -m adapix.train.report LOG.csv``: the validation curve of a training log as markdown.

Validation rows are real bitstreams (encode + decode of the held-out images) at a few qualities;
the table gives, per validation step, the wall-clock hours, real and estimated bpp and PSNR.

``python -m adapix.train.report LOG.csv --against OTHER.csv [--window 1000]``: two runs that saw
the same batches and qualities (same seed and data), compared by their logged training rows at
the steps both logged, as the mean loss, bpp and PSNR per window of steps.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from collections import defaultdict


def report(path: str) -> str:
    rows = defaultdict(dict)
    hours = {}
    speed = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["kind"] == "val":
                step = int(r["step"])
                rows[step][float(r["quality"])] = (float(r["real_bpp"]), float(r["est_bpp"]),
                                                   float(r["val_psnr"]))
                hours[step] = float(r["hours"])
            elif r["it_per_s"]:
                speed.append(float(r["it_per_s"]))
    tail = [] if not speed else ["", _speed_line(speed)]
    if not rows:
        return "\n".join(["no validation rows yet", *tail])
    qs = sorted({q for v in rows.values() for q in v})
    head = "| step | train hours | " + " | ".join(f"q{q:g}: bpp (est) / PSNR" for q in qs) + " |"
    lines = [head, "|" + "---|" * (2 + len(qs))]
    for step in sorted(rows):
        cells = []
        for q in qs:
            b, e, p = rows[step].get(q, (float("nan"),) * 3)
            cells.append(f"{b:.3f} ({e:.3f}) / {p:.2f} dB")
        lines.append(f"| {step} | {hours[step]:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines + tail)


def _speed_line(speed: list[float]) -> str:
    """The mean of the logged speeds (it/s), their median and the 10th-90th percentile range."""
    q = statistics.quantiles(speed, n=10, method="inclusive") if len(speed) > 1 else speed
    lo, hi = q[0], q[-1]
    return (f"mean training speed over the log: {statistics.fmean(speed):.2f} it/s "
            f"(median {statistics.median(speed):.2f}, 10-90%: {lo:.2f}-{hi:.2f})")


def _train_rows(path: str) -> dict[int, tuple[float, float, float]]:
    with open(path, newline="") as f:
        return {int(r["step"]): (float(r["loss"]), float(r["bpp"]), float(r["psnr"]))
                for r in csv.DictReader(f) if r["kind"] == "train"}


def compare(path: str, against: str, window: int) -> str:
    """Mean training loss, bpp and PSNR of ``path`` and ``against`` per ``window`` steps, over the
    steps both logged; the last column is ``path``'s loss relative to ``against``'s."""
    a, b = _train_rows(path), _train_rows(against)
    groups = defaultdict(list)
    for step in sorted(set(a) & set(b)):
        groups[(step - 1) // window].append(step)
    if not groups:
        return "no training steps in common"
    lines = ["| steps | rows | loss / bpp / PSNR (log) | loss / bpp / PSNR (against) | loss vs against |",
             "|---|---:|---|---|---:|"]
    for g, steps in sorted(groups.items()):
        ma, mb = ([sum(rows[s][i] for s in steps) / len(steps) for i in range(3)]
                  for rows in (a, b))
        lines.append(f"| {g * window + 1}–{min(steps[-1], (g + 1) * window)} | {len(steps)} | "
                     f"{ma[0]:.4f} / {ma[1]:.4f} / {ma[2]:.3f} | "
                     f"{mb[0]:.4f} / {mb[1]:.4f} / {mb[2]:.3f} | {100 * (ma[0] / mb[0] - 1):+.2f}% |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m adapix.train.report",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("log", help="log.csv of a training run")
    ap.add_argument("--against", default=None,
                    help="another run's log.csv: compare the training rows of the two")
    ap.add_argument("--window", type=int, default=1000,
                    help="steps per row of the comparison (default 1000)")
    args = ap.parse_args(argv)
    if args.window < 1:
        print("adapix report: error: --window must be >= 1", file=sys.stderr)
        return 2
    try:
        print(report(args.log) if args.against is None
              else compare(args.log, args.against, args.window))
    except (OSError, KeyError, ValueError) as exc:
        print(f"adapix report: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
