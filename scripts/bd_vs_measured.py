"""BD-rate and BD-PSNR of one codec against measured codecs, from `adapix eval` JSON files.

    python scripts/bd_vs_measured.py results/kodak adapix webp jpeg2000 heic444 heic vvc avif444

    python scripts/bd_vs_measured.py results/kodak-profiles adapix-balanced adapix-fast results/kodak/vvc.json

An anchor is a codec name in the folder, or a path to another results JSON (ending in .json).
``--params 5,15,25,35,50,65,80,95`` keeps only the test's points at those parameters (e.g. to
compare a sweep that includes quality 100 with BD-rates of earlier sweeps that stopped at 95):

    python scripts/bd_vs_measured.py --params 5,15,25,35,50,65,80,95 results/kodak-s32 adapix webp
Akima interpolation over the overlap only (adapix.eval.bdrate); prints one line per anchor, then
the PSNR difference at each of the test's rates (the anchor interpolated linearly in bpp; "-"
outside the anchor's range).
"""

import argparse
import json
import sys
from pathlib import Path

from adapix.eval.bdrate import bd_psnr, bd_rate
from adapix.eval.codecs import parse_qualities


def _diff_at(bpp: list[float], psnr: list[float], rate: float, value: float) -> str:
    """value minus the anchor's PSNR at ``rate`` (linear in bpp between its points)."""
    pts = sorted(zip(bpp, psnr))
    for (b0, p0), (b1, p1) in zip(pts, pts[1:]):
        if b0 <= rate <= b1:
            return f"{value - (p0 + (p1 - p0) * (rate - b0) / (b1 - b0)):+.2f}"
    return "-"


def only_params(doc: dict, params: list[float]) -> dict:
    """The ``results`` of an ``adapix eval`` JSON ``doc`` at the parameters ``params`` only (its
    ``meta.params`` name each point); ValueError if one of them is not in the curve."""
    have = [float(p) for p in doc.get("meta", {}).get("params", [])]
    params = [float(p) for p in params]
    missing = [p for p in params if p not in have]
    if missing:
        raise ValueError(f"no point at parameter(s) {missing} (the curve has {have})")
    keep = [i for i, p in enumerate(have) if p in params]
    return {k: [v[i] for i in keep] if isinstance(v, list) and len(v) == len(have) else v
            for k, v in doc["results"].items()}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="See the module docstring for examples.")
    ap.add_argument("folder", help="a results folder of adapix eval")
    ap.add_argument("test", help="the codec measured (a name in the folder, or a .json)")
    ap.add_argument("anchors", nargs="+", help="codec names in the folder, or .json paths")
    ap.add_argument("--params", default=None, metavar="LIST",
                    help="keep only the test's points at these parameters, e.g. 5,15,95")
    args = ap.parse_args(argv)
    folder, test, anchors = Path(args.folder), args.test, args.anchors

    def doc(name: str) -> dict:
        path = Path(name) if name.endswith(".json") else folder / f"{name}.json"
        return json.loads(path.read_text())

    def load(name: str) -> dict:
        return doc(name)["results"]

    t = doc(test)
    try:
        t = t["results"] if args.params is None else only_params(t, parse_qualities(args.params))
    except ValueError as exc:
        print(f"error: --params: {exc}", file=sys.stderr)
        return 2
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
