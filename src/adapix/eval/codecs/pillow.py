"""JPEG, WebP and AVIF through Pillow."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from .base import Codec, _to_rgb_array, check_rgb


def _pil_version() -> str:
    import PIL

    return f"Pillow {PIL.__version__}"


class PillowJPEG(Codec):
    """Baseline JPEG (libjpeg(-turbo) through Pillow), optimised Huffman tables, standard quant tables."""

    extension = "jpg"
    param_name = "quality"

    def __init__(self, subsampling: str = "4:2:0"):
        if subsampling not in ("4:2:0", "4:4:4"):
            raise ValueError(f"unsupported JPEG subsampling {subsampling!r}")
        self.subsampling = subsampling
        self.name = "jpeg420" if subsampling == "4:2:0" else "jpeg444"
        self.description = f"JPEG (Pillow/libjpeg, YCbCr {subsampling}, optimize=True), param = quality 1-95"

    def available(self) -> str | None:
        from PIL import features

        return None if features.check("jpg") else "Pillow was built without JPEG support"

    def params(self) -> list:
        if self.subsampling == "4:4:4":
            return [2, 5, 10, 18, 30, 50, 70, 85]
        return [2, 5, 10, 20, 35, 55, 75, 88]

    def encode(self, rgb: np.ndarray, param: Any) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(check_rgb(rgb), "RGB").save(
            buf, "JPEG", quality=int(param), subsampling=0 if self.subsampling == "4:4:4" else 2, optimize=True
        )
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return _to_rgb_array(img)

    def version(self) -> str:
        from PIL import features

        return f"{_pil_version()} libjpeg {features.version('jpg')}"


class PillowWebP(Codec):
    """Lossy WebP (libwebp through Pillow): VP8 intra, always YCbCr 4:2:0."""

    name = "webp"
    description = "WebP lossy (Pillow/libwebp, YCbCr 4:2:0, method=6), param = quality 0-100"
    extension = "webp"
    param_name = "quality"

    def available(self) -> str | None:
        from PIL import features

        return None if features.check("webp") else "Pillow was built without WebP support"

    def params(self) -> list:
        return [0, 5, 15, 30, 50, 70, 85, 92]

    def encode(self, rgb: np.ndarray, param: Any) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(check_rgb(rgb), "RGB").save(buf, "WEBP", quality=int(param), method=6, lossless=False)
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return _to_rgb_array(img)

    def version(self) -> str:
        from PIL import features

        return f"{_pil_version()} libwebp {features.version('webp')}"


class PillowAVIF(Codec):
    """AVIF (libavif through Pillow's AVIF plugin, AV1 intra via the encoder libavif picks)."""

    extension = "avif"
    param_name = "quality"

    def __init__(self, subsampling: str = "4:2:0", speed: int = 6):
        if subsampling not in ("4:2:0", "4:4:4"):
            raise ValueError(f"unsupported AVIF subsampling {subsampling!r}")
        self.subsampling = subsampling
        self.speed = int(speed)
        self.name = "avif" if subsampling == "4:2:0" else "avif444"
        self.description = (
            f"AVIF (Pillow/libavif, YCbCr {subsampling} 8-bit full range, speed={self.speed}), param = quality 0-100"
        )

    def available(self) -> str | None:
        from PIL import features

        try:
            ok = features.check("avif")
        except Exception as exc:  # pragma: no cover - very old Pillow
            return f"Pillow cannot check AVIF support ({exc})"
        return None if ok else "Pillow was built without AVIF support (needs Pillow >= 11.2 with libavif)"

    def params(self) -> list:
        return [2, 10, 25, 40, 55, 65, 75, 85]

    def encode(self, rgb: np.ndarray, param: Any) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(check_rgb(rgb), "RGB").save(
            buf, "AVIF", quality=int(param), subsampling=self.subsampling, speed=self.speed, max_threads=1
        )
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return _to_rgb_array(img)

    def version(self) -> str:
        from PIL import features

        return f"{_pil_version()} libavif {features.version('avif')}"
