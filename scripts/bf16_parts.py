"""Which part of g_s loses PSNR in bfloat16: the same latents synthesised in float32, in bf16 as
the codec does it, and in bf16 with one part rounded or kept differently.

For each image (top-left crop of --crop pixels, images smaller than that skipped) and quality
position t, the latents are analysed and entropy-coded once (``fast``, no post-filter); then
y_hat goes through the synthesis in each variant:

    float32                 the default decoder
    bf16                    ``--bf16`` as shipped (the GDNs' outputs stay float32, session 27)
    bf16, GDN out rounded   the GDNs' outputs rounded to bfloat16 (the bf16 path before session 27)
    ... + last float32      that, with g_s's last transposed convolution in float32
    ... + residual float32  that, with the residual blocks' additions in float32

and the mean PSNR (8-bit, against the crop) is printed per t. Session 27 ran it on the 8
held-out training photos (docs/results.md, "Speed", session 27)::

    python scripts/holdout_set.py ../shared/data/train /tmp/holdout
    python scripts/bf16_parts.py /tmp/holdout --weights <the session-26 file> --positions 4,6,7
"""

from __future__ import annotations

import argparse
import math
import sys
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from adapix import layers, transforms
from adapix.images import load_image
from adapix.train.data import list_images
from adapix.weights import load_weights

_LAST = transforms.SynthesisTransform._last


def _gdn_rounded(self, x):
    """GDN as before session 27: the norm and the product in the input's dtype."""
    c = x.shape[1]
    beta, gamma = self.effective_params()
    norm = F.conv2d(x * x, gamma.view(c, c, 1, 1).to(x.dtype), beta.to(x.dtype))
    norm = torch.sqrt(norm.float().clamp_min(1e-12)).to(x.dtype)
    return x * norm if self.inverse else x / norm


def _block_float(self, x):
    return x.float() + self.c2(F.leaky_relu(self.c1(x), self.SLOPE)).float()


def _last_float(self, h, last_delta):
    """g_s's last layer (with its per-image weight offsets) in float32, autocast off."""
    with torch.autocast(h.device.type, enabled=False):
        return _LAST(self, h.float(), None if last_delta is None else last_delta.float())


VARIANTS = {  # name: (bf16, {class attribute patched: replacement})
    "float32": (False, {}),
    "bf16": (True, {}),
    "bf16, GDN out rounded": (True, {(layers.GDN, "forward"): _gdn_rounded}),
    "... + last float32": (True, {(layers.GDN, "forward"): _gdn_rounded,
                                  (transforms.SynthesisTransform, "_last"): _last_float}),
    "... + residual float32": (True, {(layers.GDN, "forward"): _gdn_rounded,
                                      (layers.ResidualBlock, "forward"): _block_float}),
}


@contextmanager
def _patched(patches: dict):
    old = {k: getattr(*k) for k in patches}
    try:
        for (cls, name), fn in patches.items():
            setattr(cls, name, fn)
        yield
    finally:
        for (cls, name), fn in old.items():
            setattr(cls, name, fn)


def _psnr(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    mse = torch.mean(((x_hat.clamp(0, 1) * 255).round() / 255 - x) ** 2).item()
    return 10 * math.log10(1 / mse)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder")
    p.add_argument("--weights", default=None, help="weights file (default: the shipped one)")
    p.add_argument("--positions", default="4,6,7", help="quality positions t, comma-separated")
    p.add_argument("--crop", type=int, default=256, help="crop size, a multiple of 64")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if args.crop <= 0 or args.crop % 64:
        print("error: --crop must be a positive multiple of 64", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    model = load_weights(args.weights).model.eval()
    crops = []
    for path in list_images(args.folder):
        px = load_image(path).pixels
        if min(px.shape[:2]) >= args.crop:
            a = np.ascontiguousarray(px[: args.crop, : args.crop, :3])
            crops.append(torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255)
    if not crops:
        print(f"error: no image of {args.folder} is at least {args.crop} pixels on each side",
              file=sys.stderr)
        return 2
    print(f"{len(crops)} crops of {args.crop}x{args.crop}")
    print("| t | " + " | ".join(VARIANTS) + " |")
    print("|---:|" + "---:|" * len(VARIANTS))
    for t in (float(v) for v in args.positions.split(",")):
        sums = dict.fromkeys(VARIANTS, 0.0)
        tt = torch.tensor([t])
        with torch.no_grad():
            for x in crops:
                _, y_hat, s_hat, _ = model._code_streams(model.analyse(x, tt))
                for name, (bf16, patches) in VARIANTS.items():
                    with _patched(patches):
                        x_hat = model.synthesize(y_hat.float(), s_hat, tt, False, bf16)
                    sums[name] += _psnr(x_hat, x)
        print(f"| {t:g} | " + " | ".join(f"{v / len(crops):.3f}" for v in sums.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
