"""Write the trainer's held-out validation photos as PNG files, to compare weights files on them.

    python scripts/holdout_set.py ../shared/data/train /tmp/holdout [--count 8] [--max-side 512]
    adapix eval /tmp/holdout --codecs adapix:fast --adapix-weights A.safetensors --out results/hA
    adapix eval /tmp/holdout --codecs adapix:fast --adapix-weights B.safetensors --out results/hB
    python scripts/bd_vs_measured.py results/hB adapix-fast results/hA/adapix-fast.json

The images are the ones `adapix train` holds out of DATA when no `val_data` is given
(`adapix.train.loop.split_data`: every k-th file), never trained on, downscaled like the training
photos (short side at most --max-side). Kodak stays the evaluation set; this is the set on which a
training recipe may be chosen.
"""

import argparse
import dataclasses
import sys
from pathlib import Path

from PIL import Image

from adapix.train.config import TrainConfig
from adapix.train.data import load_rgb
from adapix.train.loop import split_data


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="the training folder")
    p.add_argument("out", help="folder to write the PNG files to")
    p.add_argument("--count", type=int, default=TrainConfig.val_holdout,
                   help=f"held-out images (default {TrainConfig.val_holdout}, as the trainer)")
    p.add_argument("--max-side", type=int, default=TrainConfig.max_side,
                   help=f"short side at most this (default {TrainConfig.max_side}, as the trainer)")
    a = p.parse_args(argv)
    if not Path(a.data).is_dir():
        print(f"error: {a.data} is not a folder", file=sys.stderr)
        return 2
    cfg = dataclasses.replace(TrainConfig(), data=a.data, val_holdout=a.count)
    _, val = split_data(cfg)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in val:
        rgb = load_rgb(path, a.max_side)
        if rgb is None:
            print(f"skipped {path} (unreadable)")
            continue
        target = out / f"{path.stem}.png"
        Image.fromarray(rgb).save(target)
        print(f"{target}: {rgb.shape[1]}x{rgb.shape[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
