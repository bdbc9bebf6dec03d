"""Image <-> ``.apx`` bytes with a loaded model: the layer the CLI and the Python API share.

Encode::

    RasterImage --to_tensor/pad--> x (1,3,Hp,Wp) --model.compress--> streams + x_hat
        --container.pack--> .apx bytes (header: size, colour, quality, profile, flags,
                                        model id, weights hash; sections: model stream,
                                        hyper, content, alpha (PNG, lossless), ICC)

Decode is the inverse; the decoder checks the model id and weights hash before decoding.
"""

from __future__ import annotations

import math
import numbers
import os
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from . import container
from .container import ApxFile, Header, SectionType
from .errors import AdapixError, ModelMismatchError
from .images import (RasterImage, crop, decode_alpha, encode_alpha, from_tensor, load_image,
                     pad_to_multiple, to_pil, to_tensor)
from .model import Streams, quality_to_position
from .profiles import get_profile
from .weights import LoadedModel, load_weights

DEFAULT_QUALITY = 50.0


@dataclass
class EncodeResult:
    """What one encode produced, with its measurements."""

    data: bytes
    width: int
    height: int
    quality: float
    profile: str
    bpp: float            # real: 8 * len(data) / pixels
    est_bpp: float        # ideal code length of the three coded streams / pixels
    psnr: float           # of the reconstruction against the input (RGB, 8-bit)
    seconds: float
    reconstruction: RasterImage
    warnings: list[str] = field(default_factory=list)


@dataclass
class DecodeResult:
    image: RasterImage
    header: Header
    seconds: float


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


class Codec:
    """A loaded model, ready for repeated encoding and decoding.

    >>> codec = Codec()                       # the shipped default weights
    >>> data = codec.encode("photo.png", quality=60)
    >>> image = codec.decode(data)            # PIL.Image
    """

    def __init__(self, weights: str | os.PathLike | LoadedModel | None = None,
                 max_pixels: int = container.DEFAULT_MAX_PIXELS):
        self.loaded = weights if isinstance(weights, LoadedModel) else load_weights(weights)
        self.model = self.loaded.model.eval()
        self.max_pixels = max_pixels

    @property
    def model_id(self) -> str:
        return self.loaded.model_id

    @property
    def decode_steps(self) -> int:
        return self.model.decode_steps

    # ---- encode ------------------------------------------------------------------------------
    def encode(self, image, quality: float = DEFAULT_QUALITY, profile: str = "fast",
               **options) -> bytes:
        """image: path, bytes, PIL.Image or RasterImage -> ``.apx`` bytes."""
        return self.encode_ex(image, quality, profile, **options).data

    def encode_ex(self, image, quality: float = DEFAULT_QUALITY, profile: str = "fast",
                  time_budget: float | None = None) -> EncodeResult:
        t0 = time.perf_counter()
        img = image if isinstance(image, RasterImage) else load_image(image, max_pixels=self.max_pixels)
        if not (isinstance(quality, numbers.Real) and 0.0 <= float(quality) <= 100.0):
            raise AdapixError(f"quality must be a number in 0..100, got {quality!r}")
        quality = round(float(quality), 2)  # what the header can carry, so what the decoder uses
        prof = get_profile(profile)
        postfilter = prof.postfilter and self.loaded.postfilter_trained
        t = quality_to_position(self.model.cfg, quality)
        x = to_tensor(img)
        xp, hw = pad_to_multiple(x, self.model.cfg.pad_multiple)
        result = prof.run(self.model, xp, hw, t, postfilter, time_budget)
        rec_px = from_tensor(crop(result.x_hat, hw), img.is_grey)
        sections = {SectionType.MODEL_STREAM: result.streams.model_stream,
                    SectionType.HYPER: result.streams.hyper,
                    SectionType.CONTENT: result.streams.content}
        if img.alpha is not None:
            sections[SectionType.ALPHA] = encode_alpha(img.alpha)
        if img.icc:
            sections[SectionType.ICC] = bytes(img.icc)
        header = Header(width=img.width, height=img.height, color=1 if img.is_grey else 3,
                        quality=quality, profile=prof.name, postfilter=postfilter,
                        alpha=img.alpha is not None, icc=bool(img.icc), tiled=False, tile_size=0,
                        model_id=self.loaded.model_id, weights_hash=self.loaded.weights_hash)
        data = container.pack(ApxFile(header, sections))
        n = img.width * img.height
        rec = RasterImage(pixels=rec_px, alpha=img.alpha, icc=img.icc, warnings=[])
        return EncodeResult(data=data, width=img.width, height=img.height, quality=quality,
                            profile=prof.name, bpp=8 * len(data) / n, est_bpp=result.est_bits / n,
                            psnr=psnr_uint8(img.pixels, rec_px),
                            seconds=time.perf_counter() - t0, reconstruction=rec,
                            warnings=list(img.warnings))

    # ---- decode ------------------------------------------------------------------------------
    def decode(self, data: bytes) -> Image.Image:
        """``.apx`` bytes -> PIL.Image (L, LA, RGB or RGBA, with the ICC profile if any)."""
        return to_pil(self.decode_ex(data).image)

    def decode_ex(self, data: bytes) -> DecodeResult:
        t0 = time.perf_counter()
        f = container.unpack(data, max_pixels=self.max_pixels)
        h = f.header
        if h.model_id != self.loaded.model_id or h.weights_hash != self.loaded.weights_hash:
            raise ModelMismatchError(
                f"file was made with model {h.model_id} ({h.weights_hash.hex()}), "
                f"loaded model is {self.loaded.model_id} ({self.loaded.weights_hash.hex()}); "
                f"pass the matching weights with --model")
        if f.content is None or f.hyper is None or f.model_stream is None:
            raise container.FormatError("file lacks a model, hyper or content section")
        m = self.model.cfg.pad_multiple
        hp, wp = -(-h.height // m) * m, -(-h.width // m) * m
        t = quality_to_position(self.model.cfg, h.quality)
        x_hat = self.model.decompress(Streams(f.model_stream, f.hyper, f.content), (hp, wp), t,
                                      postfilter=h.postfilter)
        pixels = from_tensor(crop(x_hat, (h.height, h.width)), h.color == 1)
        alpha = decode_alpha(f.alpha, h.width, h.height) if f.alpha is not None else None
        img = RasterImage(pixels=pixels, alpha=alpha, icc=f.icc, warnings=[])
        return DecodeResult(image=img, header=h, seconds=time.perf_counter() - t0)


_DEFAULT: Codec | None = None


def default_codec() -> Codec:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Codec()
    return _DEFAULT


def encode(image, quality: float = DEFAULT_QUALITY, profile: str = "fast", **options) -> bytes:
    """Encodes an image (path, bytes, PIL.Image) with the shipped model; returns ``.apx`` bytes."""
    return default_codec().encode(image, quality=quality, profile=profile, **options)


def decode(data: bytes) -> Image.Image:
    """Decodes ``.apx`` bytes with the shipped model; returns a PIL.Image."""
    return default_codec().decode(data)


__all__ = ["Codec", "EncodeResult", "DecodeResult", "encode", "decode"]
