"""The :class:`Codec` interface of an evaluated codec and the RGB-array helpers shared by all codecs."""

from __future__ import annotations

from typing import Any

import numpy as np


def check_rgb(rgb: np.ndarray) -> np.ndarray:
    """Validate an input image: ``uint8``, ``H x W x 3``, at least 1x1. Returns it C-contiguous."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"expected a uint8 HxWx3 RGB image, got {rgb.dtype} {rgb.shape}")
    return np.ascontiguousarray(rgb)


def _to_rgb_array(img: Any) -> np.ndarray:
    """PIL image (any mode) -> uint8 HxWx3."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()


class Codec:
    """Base class (and de-facto protocol) of an evaluated codec.

    Subclasses set ``name``, ``description`` and ``extension`` and implement :meth:`params`,
    :meth:`encode` and :meth:`decode`; they override :meth:`available` when they depend on an optional
    library or binary. ``param`` values must be JSON-serialisable (they key the result cache).
    """

    name: str = "codec"
    description: str = ""
    extension: str = "bin"
    param_name: str = "param"
    revision: int = 1  # bump when the codec's pipeline changes, to invalidate cached results

    def available(self) -> str | None:
        """``None`` if the codec can run here, else a one-line reason why it is skipped."""
        return None

    def params(self) -> list:
        """The quality parameters of the sweep, ordered from lowest to highest rate."""
        raise NotImplementedError

    def encode(self, rgb: np.ndarray, param: Any) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> np.ndarray:
        raise NotImplementedError

    def version(self) -> str:
        """Versions of the libraries involved; part of the result-cache fingerprint."""
        return ""

    def fingerprint(self, param: Any = None) -> str:
        """Identifies the exact configuration that codes at ``param`` (None: the codec as a whole):
        cached results with another fingerprint are recomputed."""
        return f"{self.name}|r{self.revision}|{self.description}|{self.version()}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
