"""``python -m adapix.demo [IMAGE]``: encode and decode one image with the shipped model.

Writes out/demo.apx and out/demo.png and prints bits per pixel, PSNR and the encode and decode
times. Without an argument it uses a synthetic 512x384 test picture.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .codec import DEFAULT_QUALITY, Codec, psnr_uint8
from .errors import AdapixError
from .images import RasterImage, load_image, save_image


def synthetic(width: int = 512, height: int = 384) -> RasterImage:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 128 + 100 * np.sin(xx / 37.0) * np.cos(yy / 23.0)
    g = 255 * xx / width
    b = 128 + 120 * np.sin((xx + yy) / 51.0)
    img = np.stack([r, g, b], -1) + np.random.default_rng(0).normal(0, 4, (height, width, 3))
    return RasterImage(pixels=np.clip(img, 0, 255).round().astype(np.uint8))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path("out")
    out.mkdir(exist_ok=True)
    try:
        src = load_image(argv[0]) if argv else synthetic()
        name = argv[0] if argv else "synthetic 512x384 picture"
        codec = Codec()
        enc = codec.encode_ex(src, quality=DEFAULT_QUALITY)
        (out / "demo.apx").write_bytes(enc.data)
        dec = codec.decode_ex(enc.data)
        save_image(dec.image, out / "demo.png")
    except AdapixError as exc:
        print(f"adapix demo: error: {exc}", file=sys.stderr)
        return 1
    exact = np.array_equal(dec.image.pixels, enc.reconstruction.pixels)
    print(f"image        {name} ({enc.width}x{enc.height})")
    print(f"model        {codec.model_id} ({codec.decode_steps} sequential decode steps)")
    print(f"file         out/demo.apx, {len(enc.data)} bytes, {enc.bpp:.4f} bpp (quality {DEFAULT_QUALITY:g})")
    print(f"PSNR         {psnr_uint8(src.pixels, dec.image.pixels):.2f} dB")
    print(f"encode       {enc.seconds:.2f} s")
    print(f"decode       {dec.seconds:.2f} s")
    print(f"decoded      out/demo.png ({'identical to' if exact else 'DIFFERS from'} the encoder's "
          f"reconstruction)")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
