"""BD-rate and BD-PSNR of one codec against measured codecs, from `adapix eval` JSON files.

    python scripts/bd_vs_measured.py results/kodak adapix webp jpeg2000 heic444 heic vvc avif444

    python scripts/bd_vs_measured.py results/kodak-profiles adapix-balanced adapix-fast results/kodak/vvc.json

An anchor is a codec name in the folder, or a path to another results JSON (ending in .json).
Akima interpolation over the overlap only (adapix.eval.bdrate); prints one line per anchor, then
the PSNR difference at each of the test's rates (the anchor interpolated linearly in bpp; "-"
outside the anchor's range).
"""

import json
import sys
from pathlib import Path

from adapix.eval.bdrate import bd_psnr, bd_rate


def _diff_at(bpp: list[float], psnr: list[float], rate: float, value: float) -> str:
    """value minus the anchor's PSNR at ``rate`` (linear in bpp between its points)."""
    pts = sorted(zip(bpp, psnr))
    for (b0, p0), (b1, p1) in zip(pts, pts[1:]):
        if b0 <= rate <= b1:
            return f"{value - (p0 + (p1 - p0) * (rate - b0) / (b1 - b0)):+.2f}"
    return "-"


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    folder, test, anchors = Path(argv[0]), argv[1], argv[2:]

    def load(name: str) -> dict:
        path = Path(name) if name.endswith(".json") else folder / f"{name}.json"
        return json.loads(path.read_text())["results"]

    t = load(test)
    print(f"{test}: bpp " + " ".join(f"{v:.3f}" for v in t["bpp"]))
    print(f"{test}: PSNR " + " ".join(f"{v:.2f}" for v in t["psnr-rgb"]))
    if t.get("encoding_time") and t.get("decoding_time"):
        mean = lambda v: sum(v) / len(v)  # noqa: E731
        print(f"{test}: mean encode {mean(t['encoding_time']):.2f} s, "
              f"mean decode {mean(t['decoding_time']):.2f} s per image")
    for name in anchors:
        a = load(name)
        r = bd_rate(a["bpp"], a["psnr-rgb"], t["bpp"], t["psnr-rgb"])
        p = bd_psnr(a["bpp"], a["psnr-rgb"], t["bpp"], t["psnr-rgb"])
        print(f"vs {Path(name).stem}: BD-rate {r.value:+.2f}% (overlap {r.overlap:.0%}), "
              f"BD-PSNR {p.value:+.2f} dB (overlap {p.overlap:.0%})")
        print("   dB at the test's rates: " + " ".join(
            _diff_at(a["bpp"], a["psnr-rgb"], b, q) for b, q in zip(t["bpp"], t["psnr-rgb"])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
