"""``python -m adapix.train.report LOG.csv``: the validation curve of a training log as markdown.

Validation rows are real bitstreams (encode + decode of the held-out images) at a few qualities;
the table gives, per validation step, the wall-clock hours, real and estimated bpp and PSNR.
"""

from __future__ import annotations

import csv
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
    if not rows:
        return "no validation rows yet"
    qs = sorted({q for v in rows.values() for q in v})
    head = "| step | train hours | " + " | ".join(f"q{q:g}: bpp (est) / PSNR" for q in qs) + " |"
    lines = [head, "|" + "---|" * (2 + len(qs))]
    for step in sorted(rows):
        cells = []
        for q in qs:
            b, e, p = rows[step].get(q, (float("nan"),) * 3)
            cells.append(f"{b:.3f} ({e:.3f}) / {p:.2f} dB")
        lines.append(f"| {step} | {hours[step]:.2f} | " + " | ".join(cells) + " |")
    if speed:
        lines.append("")
        lines.append(f"mean training speed over the log: {sum(speed) / len(speed):.2f} it/s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m adapix.train.report LOG.csv", file=sys.stderr)
        return 2
    try:
        print(report(argv[0]))
    except (OSError, KeyError, ValueError) as exc:
        print(f"adapix report: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
