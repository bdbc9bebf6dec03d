"""JPEG XL and JPEG 2000 through imagecodecs."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Codec, check_rgb


def _imagecodecs_reason(attr: str, label: str) -> str | None:
    try:
        import imagecodecs
    except ImportError as exc:
        return f"imagecodecs is not installed ({exc})"
    codec = getattr(imagecodecs, attr, None)
    if codec is None or not getattr(codec, "available", False):
        return f"imagecodecs was built without {label}"
    return None


class ImagecodecsJXL(Codec):
    """JPEG XL (libjxl through imagecodecs), VarDCT lossy with a butteraugli distance target."""

    name = "jxl"
    description = "JPEG XL (imagecodecs/libjxl, VarDCT, effort=7), param = butteraugli distance (lower is better)"
    extension = "jxl"
    param_name = "distance"

    def available(self) -> str | None:
        return _imagecodecs_reason("JPEGXL", "JPEG XL (libjxl)")

    def params(self) -> list:
        return [25.0, 15.0, 10.0, 6.0, 4.0, 2.5, 1.6, 1.1, 0.8]

    def encode(self, rgb: np.ndarray, param: Any) -> bytes:
        import imagecodecs

        return bytes(imagecodecs.jpegxl_encode(check_rgb(rgb), distance=float(param), effort=7, numthreads=1))

    def decode(self, data: bytes) -> np.ndarray:
        import imagecodecs

        out = np.asarray(imagecodecs.jpegxl_decode(data, numthreads=1))
        return _normalise_decoded(out)

    def version(self) -> str:
        import imagecodecs

        return f"imagecodecs {imagecodecs.__version__} libjxl {imagecodecs.jpegxl_version()}"


class ImagecodecsJ2K(Codec):
    """JPEG 2000 (OpenJPEG through imagecodecs), irreversible 9/7 + ICT, raw J2K codestream."""

    name = "jpeg2000"
    description = (
        "JPEG 2000 (imagecodecs/OpenJPEG, 9/7 wavelet + ICT, raw .j2k codestream), param = target PSNR in dB"
    )
    extension = "j2k"
    param_name = "target_psnr"

    def available(self) -> str | None:
        return _imagecodecs_reason("JPEG2K", "JPEG 2000 (OpenJPEG)")

    def params(self) -> list:
        return [22, 24, 26, 28, 30, 32, 35, 38, 41]

    def encode(self, rgb: np.ndarray, param: Any) -> bytes:
        import imagecodecs

        # imagecodecs maps ``level`` to OpenJPEG's fixed-quality mode (target PSNR in dB); level=None
        # would be lossless, so the parameter is always given.
        return bytes(
            imagecodecs.jpeg2k_encode(
                check_rgb(rgb), level=float(param), codecformat="j2k", reversible=False, numthreads=1
            )
        )

    def decode(self, data: bytes) -> np.ndarray:
        import imagecodecs

        return _normalise_decoded(np.asarray(imagecodecs.jpeg2k_decode(data, numthreads=1)))

    def version(self) -> str:
        import imagecodecs

        return f"imagecodecs {imagecodecs.__version__} openjpeg {imagecodecs.jpeg2k_version()}"


def _normalise_decoded(out: np.ndarray) -> np.ndarray:
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    if out.shape[2] == 4:
        out = out[:, :, :3]
    if out.dtype != np.uint8:
        raise ValueError(f"decoder returned {out.dtype}, expected uint8")
    return np.ascontiguousarray(out)
