"""What the decoder post-filter buys: the same files decoded with the post-filter off and on.

The post-filter flag changes only the decoder, not the coded streams, so the rate is identical and
the gain is the PSNR difference at each point (and the BD-rate of "on" against "off"). For every
image of a folder and every quality, the image is coded without encoder-side optimisation
(profile ``fast``); its streams are decoded twice, and the decode time of each is taken.

Example (the Kodak figures in docs/ablations.md)::

    python scripts/postfilter_gain.py ../shared/data/kodak --qualities 15,35,65,95 \\
        --out docs/results/postfilter_kodak.json

Needs weights with a trained post-filter (training stage ``postfilter``; ``adapix export``
marks it trained).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from adapix.codec import Codec, psnr_uint8
from adapix.eval.bdrate import bd_rate
from adapix.images import crop, from_tensor, load_image, pad_to_multiple, to_tensor
from adapix.model import quality_to_position
from adapix.optimize.cost import stream_bits


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="a folder of PNG or JPEG images")
    p.add_argument("--qualities", default="15,35,65,95")
    p.add_argument("--weights", default=None, help="weights file (default: the shipped model)")
    p.add_argument("--limit", type=int, default=0, help="only the first N images")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write the per-image rows and summary as JSON")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    codec = Codec(args.weights) if args.weights else Codec()
    if not codec.loaded.postfilter_trained:
        print("error: these weights have no trained post-filter", file=sys.stderr)
        return 2
    model = codec.model
    paths = sorted(q for q in Path(args.folder).iterdir()
                   if q.suffix.lower() in (".png", ".jpg", ".jpeg"))
    paths = paths[: args.limit] if args.limit else paths
    if not paths:
        print(f"error: no images in {args.folder}", file=sys.stderr)
        return 2
    qualities = [float(q) for q in args.qualities.split(",")]
    rows = []
    with torch.no_grad():
        for path in tqdm(paths, desc="images"):
            img = load_image(path)
            xp, hw = pad_to_multiple(to_tensor(img), model.cfg.pad_multiple)
            for q in qualities:
                t = quality_to_position(model.cfg, q)
                res = model.compress(xp, t, postfilter=False)
                row = {"image": path.name, "quality": q,
                       "bpp": stream_bits(res) / (hw[0] * hw[1])}
                for flag in (False, True):
                    t0 = time.perf_counter()
                    x_hat = model.decompress(res.streams, tuple(xp.shape[-2:]), t,
                                             postfilter=flag)
                    key = "on" if flag else "off"
                    row[f"decode_s_{key}"] = time.perf_counter() - t0
                    rec = from_tensor(crop(x_hat, hw), grey=False)
                    row[f"psnr_{key}"] = psnr_uint8(from_tensor(crop(xp, hw), grey=False), rec)
                rows.append(row)
    summary = {"images": len(paths), "qualities": qualities, "per_quality": []}
    for q in qualities:
        sel = [r for r in rows if r["quality"] == q]
        summary["per_quality"].append({
            "quality": q, "bpp": float(np.mean([r["bpp"] for r in sel])),
            "psnr_off": float(np.mean([r["psnr_off"] for r in sel])),
            "psnr_on": float(np.mean([r["psnr_on"] for r in sel])),
            "decode_s_off": float(np.median([r["decode_s_off"] for r in sel])),
            "decode_s_on": float(np.median([r["decode_s_on"] for r in sel]))})
    bds = []
    for name in sorted({r["image"] for r in rows}):
        sel = sorted((r for r in rows if r["image"] == name), key=lambda r: r["quality"])
        bd = bd_rate([r["bpp"] for r in sel], [r["psnr_off"] for r in sel],
                     [r["bpp"] for r in sel], [r["psnr_on"] for r in sel])
        if bd.ok:
            bds.append(bd.value)
    summary["bd_rate_on_vs_off"] = float(np.mean(bds)) if bds else None
    summary["delta_psnr"] = float(np.mean([r["psnr_on"] - r["psnr_off"] for r in rows]))
    print("| quality | bpp | PSNR off | PSNR on | gain dB | decode s off | decode s on |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for s in summary["per_quality"]:
        print(f"| {s['quality']:g} | {s['bpp']:.3f} | {s['psnr_off']:.2f} | {s['psnr_on']:.2f} | "
              f"{s['psnr_on'] - s['psnr_off']:+.3f} | {s['decode_s_off']:.2f} | "
              f"{s['decode_s_on']:.2f} |")
    bd_txt = "n/a" if summary["bd_rate_on_vs_off"] is None else f"{summary['bd_rate_on_vs_off']:+.2f}%"
    print(f"\n{len(paths)} images; mean gain {summary['delta_psnr']:+.3f} dB; "
          f"BD-rate on vs off (mean of per-image) {bd_txt}")
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
