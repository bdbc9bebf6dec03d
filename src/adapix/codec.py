"""Image <-> ``.apx`` bytes with a loaded model: the layer the CLI and the Python API share.

Encode::

    RasterImage --to_tensor/pad--> x (1,3,Hp,Wp) --model.compress--> streams + x_hat
        --container.pack--> .apx bytes (header: size, colour, quality, profile, flags,
                                        model id, weights hash; sections: model stream,
                                        hyper, content, alpha (PNG, lossless), ICC)

Images above :data:`adapix.tiling.AUTO_TILE_PIXELS` pixels (or any image given a tile size) are
cut into disjoint tiles, each coded with the same per-image path into its own three streams; the
header's TILED flag and tile size and the TILE_INDEX section describe the grid (see
:mod:`adapix.tiling` and :mod:`adapix.container`). Only the uint8 image, its uint8
reconstruction and one tile's float working set are in memory at a time.

Decode is the inverse; the decoder checks the model id and weights hash before decoding, and the
tile index against the header's grid before it allocates the output image.
"""

from __future__ import annotations

import math
import numbers
import os
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from . import container, tiling
from .container import ApxFile, Header, SectionType
from .errors import AdapixError, ModelMismatchError
from .hardware import bf16_is_fast, tune_allocator
from .images import (RasterImage, crop, decode_alpha, encode_alpha, from_tensor, load_image,
                     pad_to_multiple, to_pil, to_tensor)
from .model import Streams, position_to_quality, quality_to_position
from .profiles import get_profile
from .weights import LoadedModel, load_weights

DEFAULT_QUALITY = 65.0
"""The quality when none is given: lambda 0.018 with the shipped model's eight anchors (about
quality 50 of the six-anchor scale the models of sessions 1-9 had)."""
SLOW_BF16_WARNING = ("this CPU has no native bfloat16 kernels: the bf16 synthesis runs several "
                     "times slower here than float32 (and so does decoding the file on such a "
                     "CPU)")
FINISH_RESERVE = 0.2
"""Seconds of a time budget (at most 2% of it) kept back from the encoder-side optimisation for
the codec's own finishing work (its last coding pass, the reconstruction, the container), so
that the whole call stays within the budget."""


@dataclass
class EncodeResult:
    """What one encode produced, with its measurements."""

    data: bytes
    width: int
    height: int
    quality: float        # the header's: the asked one unless best's quality decision moved it
    profile: str
    bpp: float            # real: 8 * len(data) / pixels
    est_bpp: float        # ideal code length of the three coded streams / pixels
    psnr: float           # of the reconstruction against the input (RGB, 8-bit)
    seconds: float
    reconstruction: RasterImage
    warnings: list[str] = field(default_factory=list)
    tile_size: int = 0    # 0: not tiled
    postfilter: bool = False  # the header's flag: the decoder applies the post-filter
    bf16: bool = False    # the header's flag: the synthesis runs in bfloat16


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

    Creating a Codec applies :func:`adapix.hardware.tune_allocator` (process-wide: large
    tensors from the heap instead of a fresh mmap each; ``ADAPIX_SYSTEM_MALLOC=1`` opts out).
    """

    def __init__(self, weights: str | os.PathLike | LoadedModel | None = None,
                 max_pixels: int = container.DEFAULT_MAX_PIXELS):
        tune_allocator()  # large tensors from the heap, not mmap (adapix.hardware)
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
                  time_budget: float | None = None, tile_size: int | None = None,
                  bf16: bool = False) -> EncodeResult:
        """``bf16``: reconstruct (here and in every decoder: the header's BF16 flag) with the
        synthesis transform in bfloat16, 3.6-3.9x faster than float32 on a CPU with native bf16
        kernels (AVX512-BF16 / AMX), PSNR at most 0.01 dB lower on Kodak (docs/results.md,
        "Speed", session 27); the streams are the same. ``tile_size``: None tiles images above
        :data:`adapix.tiling.AUTO_TILE_PIXELS` pixels with tiles of
        :data:`adapix.tiling.DEFAULT_TILE_SIZE`; 0 never tiles; a multiple of 64 tiles with that
        size (see :mod:`adapix.tiling`). ``time_budget`` (seconds; None: the
        profile's default for the image's size, ``math.inf``: none) bounds the whole call, from
        reading the image on; the encoder-side optimisation gets what is left of it, less a
        finishing reserve (:data:`FINISH_RESERVE`; a tiled image shares that among its tiles)."""
        t0 = time.perf_counter()
        img = image if isinstance(image, RasterImage) else load_image(image, max_pixels=self.max_pixels)
        if not (isinstance(quality, numbers.Real) and 0.0 <= float(quality) <= 100.0):
            raise AdapixError(f"quality must be a number in 0..100, got {quality!r}")
        quality = round(float(quality), 2)  # what the header can carry, so what the decoder uses
        if not isinstance(bf16, bool):
            raise AdapixError(f"bf16 must be True or False, got {bf16!r}")
        prof = get_profile(profile)
        tile = tiling.choose_tile_size(img.height, img.width, tile_size)
        postfilter = prof.postfilter and self.loaded.postfilter_trained
        t = quality_to_position(self.model.cfg, quality)
        n = img.width * img.height
        if time_budget is None:  # the profile's default for this image size (None: unbounded)
            time_budget = prof.default_budget((img.height, img.width))

        reserve = 0.0 if time_budget is None else min(FINISH_RESERVE, 0.02 * time_budget)

        def left() -> float | None:
            """What is left of the budget, which counts from the start of encode_ex, less the
            finishing reserve."""
            if time_budget is None:
                return None
            return max(time_budget - reserve - (time.perf_counter() - t0), 0.0)

        if not tile:
            streams, rec_px, est_bits, postfilter, t_coded = self._code_pixels(
                img.pixels, prof, t, postfilter, left(), bf16)
            if t_coded != t:  # the profile's quality mode decision: the header says where
                quality = round(position_to_quality(self.model.cfg, t_coded), 2)
            sections = {SectionType.MODEL_STREAM: streams.model_stream,
                        SectionType.HYPER: streams.hyper, SectionType.CONTENT: streams.content}
            psnr = psnr_uint8(img.pixels, rec_px)
        else:
            # One tile at a time: only the uint8 image and its uint8 reconstruction are whole.
            grid = tiling.TileGrid(img.height, img.width, tile)
            rec_px = np.empty_like(img.pixels)
            parts, est_bits, sse = [], 0.0, 0
            for tl in grid:
                budget = left()
                if budget is not None:  # an equal share of what is left
                    budget /= grid.count - tl.index
                src = tiling.cut(img.pixels, tl)
                streams, rec_tile, bits, _, _ = self._code_pixels(
                    src, prof, t, postfilter, budget, bf16, choose_per_image=False)
                tiling.paste(rec_px, tl, rec_tile)
                parts.append((streams.model_stream, streams.hyper, streams.content))
                est_bits += bits
                sse += tiling.squared_error(src, rec_tile)
            sections = container.tile_sections(parts)
            mse = sse / rec_px.size
            psnr = float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)
        if img.alpha is not None:
            sections[SectionType.ALPHA] = encode_alpha(img.alpha)
        if img.icc:
            sections[SectionType.ICC] = bytes(img.icc)
        header = Header(width=img.width, height=img.height, color=1 if img.is_grey else 3,
                        quality=quality, profile=prof.name, postfilter=postfilter,
                        alpha=img.alpha is not None, icc=bool(img.icc), tiled=bool(tile),
                        tile_size=tile, model_id=self.loaded.model_id,
                        weights_hash=self.loaded.weights_hash, bf16=bf16)
        data = container.pack(ApxFile(header, sections))
        rec = RasterImage(pixels=rec_px, alpha=img.alpha, icc=img.icc, warnings=[])
        warnings = list(img.warnings) + ([SLOW_BF16_WARNING] if bf16 and not bf16_is_fast() else [])
        return EncodeResult(data=data, width=img.width, height=img.height, quality=quality,
                            profile=prof.name, bpp=8 * len(data) / n, est_bpp=est_bits / n,
                            psnr=psnr, seconds=time.perf_counter() - t0, reconstruction=rec,
                            warnings=warnings, tile_size=tile, postfilter=postfilter, bf16=bf16)

    def _code_pixels(self, pixels: np.ndarray, prof, t: float, postfilter: bool,
                     time_budget: float | None, bf16: bool, choose_per_image: bool = True,
                     ) -> tuple[Streams, np.ndarray, float, bool, float]:
        """Codes one whole image or one tile, uint8 (H, W, 1|3), with the per-image path:
        (streams, uint8 reconstruction of the same shape, ideal code length in bits, post-filter
        flag of the reconstruction, quality position it was coded at). The tiles of a file
        share the header's flag and quality as given (``choose_per_image=False``)."""
        x = to_tensor(RasterImage(pixels=np.ascontiguousarray(pixels)))
        xp, hw = pad_to_multiple(x, self.model.cfg.pad_multiple)
        del x
        result = prof.run(self.model, xp, hw, t, postfilter, time_budget,
                          choose_postfilter=choose_per_image, choose_quality=choose_per_image,
                          bf16=bf16)
        rec = from_tensor(crop(result.x_hat, hw), pixels.shape[2] == 1)
        t_coded = t if result.t is None else result.t
        return result.streams, rec, result.est_bits, result.postfilter, t_coded

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
        m = self.model.cfg.pad_multiple  # the decoder works on sides rounded up to m: 1xN is mxN
        area = -(-h.height // m) * m * (-(-h.width // m) * m)
        if area > self.max_pixels:
            raise container.FormatError(
                f"image is {h.width}x{h.height}, decoded as {area} pixels (sides rounded up to a "
                f"multiple of {m}), above the limit of {self.max_pixels} (raise it with "
                "--max-pixels if you trust this file)")
        try:  # the working set of one unit (tile or whole image), before allocating anything
            tiling.check_unit(h.height, h.width, h.tile_size if h.tiled else 0)
        except AdapixError as exc:
            raise container.FormatError(str(exc)) from None
        t = quality_to_position(self.model.cfg, h.quality)
        grey = h.color == 1
        if not h.tiled:
            if f.tile_index is not None:
                raise container.FormatError("TILE_INDEX section in a file that is not tiled")
            pixels = self._decode_pixels(Streams(f.model_stream, f.hyper, f.content),
                                         h.height, h.width, t, h, grey)
        else:
            tiles = container.tile_streams(f)  # checked against the grid before allocating
            grid = tiling.TileGrid(h.height, h.width, h.tile_size)
            pixels = np.empty((h.height, h.width, 1 if grey else 3), np.uint8)
            for tl, (ms, hyper, content) in zip(grid, tiles):
                tiling.paste(pixels, tl, self._decode_pixels(Streams(ms, hyper, content),
                                                             tl.height, tl.width, t, h,
                                                             grey))
        alpha = decode_alpha(f.alpha, h.width, h.height) if f.alpha is not None else None
        img = RasterImage(pixels=pixels, alpha=alpha, icc=f.icc, warnings=[])
        return DecodeResult(image=img, header=h, seconds=time.perf_counter() - t0)

    def _decode_pixels(self, streams: Streams, height: int, width: int, t: float,
                       header: Header, grey: bool) -> np.ndarray:
        """Decodes one whole image or one tile of ``height`` x ``width`` -> uint8 (H, W, 1|3),
        with the header's post-filter and synthesis-precision flags."""
        m = self.model.cfg.pad_multiple
        hp, wp = -(-height // m) * m, -(-width // m) * m
        x_hat = self.model.decompress(streams, (hp, wp), t, postfilter=header.postfilter,
                                      bf16=header.bf16)
        return from_tensor(crop(x_hat, (height, width)), grey)


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
