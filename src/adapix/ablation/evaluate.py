"""Rate-distortion points and decode time of a trained ablation variant.

Rate: the ideal code length from the model's likelihoods with real rounding (eval mode, rate_mode
"ste": y, z and s rounded; bits_s = 0 with the model stream off), per image divided by its pixel
count (before padding). Distortion: RGB PSNR (:func:`adapix.eval.metrics.psnr`) of the
reconstruction clamped and rounded to 8 bits, cropped to the image size. Both per image, then
averaged over the images -- one RD point per quality.

Decode time (one image, ``threads`` threads, median of ``runs`` after one warm-up): what a decoder
computes once z_hat and s_hat are known, in decode order::

    feats = h_s(z_hat)                                  (1, 2M, H/16, W/16)
    y_hat = entropy parameters in decode order          MSP: its 2*(1+3*(S-1)) steps;
                                                        hyperprior: one pass;
                                                        serial: (H/16)*(W/16) positions
    x_hat = synthesize(y_hat, s_hat, t)                 g_s with the generated last layer

The symbols are taken from the encoder's y (standing in for the range decoder, whose cost is the
same for all variants); all variants run their float networks (the fixed-point copies of the
shipped codec exist for MSP only), so the times compare the models, not the number formats.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..bench.timing import median_time, torch_threads
from ..eval.metrics import psnr
from ..images import crop, pad_to_multiple
from ..model import quality_to_position
from .model import AblationModel


@dataclass
class RDPoint:
    quality: float
    bpp: float      # mean over images of all streams' estimated bits / pixels
    bpp_y: float
    bpp_z: float
    bpp_s: float
    psnr: float     # mean over images, dB


@dataclass
class DecodeTiming:
    width: int
    height: int
    threads: int
    runs: int
    decode_s: float         # h_s + entropy parameters in decode order + g_s (median)
    entropy_s: float        # the entropy-parameter part alone (median)
    sequential_steps: int   # entropy-decoding steps incl. the hyper/model-stream step


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 255.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float -> (H, W, 3) uint8, clamped and rounded."""
    return (x[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


@torch.no_grad()
def rd_points(model: AblationModel, images: list[np.ndarray], qualities: list[float],
              progress: bool = True, desc: str = "eval") -> list[RDPoint]:
    """One RD point per quality, averaged over ``images`` ((H, W, 3) uint8 each)."""
    model.eval()
    sums = {q: np.zeros(5) for q in qualities}  # bpp, bpp_y, bpp_z, bpp_s, psnr
    bar = tqdm(total=len(images) * len(qualities), desc=desc, disable=not progress, leave=False,
               dynamic_ncols=True)
    for img in images:
        x = to_tensor(img)
        xp, hw = pad_to_multiple(x, model.cfg.pad_multiple)
        n = hw[0] * hw[1]
        for q in qualities:
            t = torch.tensor([quality_to_position(model.cfg, q)])
            out = model(xp, t, rate_mode="ste")
            rec = to_uint8(crop(out.x_hat.float(), hw))
            b = [float(v) / n for v in (out.bits, out.bits_y, out.bits_z, out.bits_s)]
            sums[q] += np.array([*b, psnr(img, rec)])
            bar.update(1)
    bar.close()
    k = max(1, len(images))
    return [RDPoint(q, *(float(v) for v in sums[q] / k)) for q in qualities]


def entropy_decode(model: AblationModel, feats: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """y_hat computed in decode order: the serial model position by position, the others through
    their own (already step-ordered) forward pass."""
    entropy = model.msp
    if hasattr(entropy, "decode_serial"):
        return entropy.decode_serial(feats, y)[0]
    return entropy(feats, y, "ste")[0]


def timing_image(images: list[np.ndarray], width: int, height: int) -> np.ndarray:
    """A width x height picture: the first image of that size (or its transpose), else the first
    image resized (bicubic), else a smooth synthetic gradient."""
    for img in images:
        if img.shape[:2] == (height, width):
            return img
        if img.shape[:2] == (width, height):
            return np.ascontiguousarray(img.transpose(1, 0, 2))
    if images:
        return np.asarray(Image.fromarray(images[0]).resize((width, height), Image.BICUBIC))
    yy, xx = np.mgrid[0:height, 0:width]
    planes = [xx * 255 / max(1, width - 1), yy * 255 / max(1, height - 1), (xx + yy) % 256]
    return np.stack(planes, -1).astype(np.uint8)


@torch.no_grad()
def decode_timing(model: AblationModel, img: np.ndarray, quality: float = 50.0, runs: int = 3,
                  threads: int = 1) -> DecodeTiming:
    """Median decode time of ``img`` (H, W, 3) uint8; see the module docstring for what is timed."""
    model.eval()
    x = to_tensor(img)
    xp, _ = pad_to_multiple(x, model.cfg.pad_multiple)
    t = torch.tensor([quality_to_position(model.cfg, quality)])
    with torch_threads(threads):
        lat = model.analyse(xp, t)
        z_hat = torch.round(lat.z)
        s_hat = model.stream_hat(torch.round(lat.s))
        feats = model.h_s(z_hat)

        def entropy_only():
            return entropy_decode(model, feats, lat.y)

        def full():
            y_hat = entropy_decode(model, model.h_s(z_hat), lat.y)
            return model.synthesize(y_hat, s_hat, t, postfilter=False).clamp(0, 1)

        entropy_s, _ = median_time(entropy_only, runs)
        decode_s, _ = median_time(full, runs)
    h, w = img.shape[:2]
    return DecodeTiming(width=w, height=h, threads=threads, runs=runs, decode_s=decode_s,
                        entropy_s=entropy_s,
                        sequential_steps=model.decode_steps_at(tuple(xp.shape[-2:])))


def load_eval_images(folder: Path, limit: int | None = None) -> list[np.ndarray]:
    """The images of ``folder`` (recursive, sorted) at full resolution, as (H, W, 3) uint8."""
    from ..train.data import list_images, load_rgb

    paths = list_images(folder)
    images = [a for a in (load_rgb(p, None) for p in paths) if a is not None][:limit or None]
    if not images:
        raise ValueError(f"no readable image in {folder}")
    return images


__all__ = ["RDPoint", "DecodeTiming", "rd_points", "decode_timing", "timing_image",
           "entropy_decode", "load_eval_images"]
