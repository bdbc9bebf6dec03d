"""Compare two weights files on the same images: mean bpp and PSNR per file.

    python scripts/compare_weights.py A.safetensors B.safetensors IMAGE... [--quality 50]

Used to check that the fp16 export loses nothing measurable against an fp32 export
(`adapix export CKPT -o /tmp/fp32.safetensors --fp32`).
"""

import argparse

from adapix.codec import Codec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", nargs=2)
    p.add_argument("images", nargs="+")
    p.add_argument("--quality", type=float, default=50.0)
    a = p.parse_args()
    for w in a.weights:
        codec = Codec(w)
        res = [codec.encode_ex(i, quality=a.quality) for i in a.images]
        print(f"{w}: {sum(r.bpp for r in res) / len(res):.4f} bpp, "
              f"{sum(r.psnr for r in res) / len(res):.3f} dB over {len(res)} images")


if __name__ == "__main__":
    main()
