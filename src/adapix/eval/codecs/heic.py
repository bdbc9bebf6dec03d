"""HEIC through pillow-heif (libheif, x265)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from .base import Codec, _to_rgb_array, check_rgb


class HeifHEIC(Codec):
    """HEIC (HEVC intra by x265 through libheif/pillow-heif; decoded by libde265)."""

    extension = "heic"
    param_name = "quality"

    def __init__(self, chroma: str = "420"):
        if chroma not in ("420", "444"):
            raise ValueError(f"unsupported HEIC chroma {chroma!r}")
        self.chroma = chroma
        self.name = "heic" if chroma == "420" else "heic444"
        sub = "4:2:0" if chroma == "420" else "4:4:4"
        self.description = f"HEIC (pillow-heif/libheif, x265, YCbCr {sub} 8-bit), param = quality 0-100"

    def available(self) -> str | None:
        try:
            import pillow_heif
        except ImportError as exc:
            return f"pillow-heif is not installed ({exc})"
        info = pillow_heif.libheif_info()
        if "x265" not in str(info.get("HEIF", "")) and "x265" not in info.get("encoders", {}):
            return "pillow-heif has no x265 HEVC encoder"
        return None

    def params(self) -> list:
        return [2, 10, 20, 30, 40, 50, 58, 65]

    def encode(self, rgb: np.ndarray, param: Any) -> bytes:
        import pillow_heif

        rgb = check_rgb(rgb)
        buf = io.BytesIO()
        pillow_heif.encode(
            "RGB", (rgb.shape[1], rgb.shape[0]), rgb.tobytes(), buf, quality=int(param), chroma=self.chroma
        )
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        import pillow_heif

        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
        return _to_rgb_array(heif.to_pillow())

    def version(self) -> str:
        import pillow_heif

        info = pillow_heif.libheif_info()
        return f"pillow-heif {pillow_heif.__version__} libheif {info.get('libheif')} {info.get('HEIF')}"
