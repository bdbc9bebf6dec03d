"""Fixtures of the evaluation tests: tiny synthetic images made on the fly (no data files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def synthetic_image(h: int = 64, w: int = 64, seed: int = 0, noise: float = 6.0) -> np.ndarray:
    """A smooth colour gradient with a few edges and mild noise, uint8 H x W x 3."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 40 + 170 * xx / max(w - 1, 1)
    g = 60 + 140 * yy / max(h - 1, 1)
    b = 128 + 80 * np.sin(xx / 6.0) * np.cos(yy / 9.0)
    img = np.stack([r, g, b], axis=-1)
    img[h // 3 : h // 2, w // 4 : w // 2] = (220, 40, 40)  # a flat block with sharp edges
    img += rng.normal(0.0, noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


@pytest.fixture
def make_image():
    """The :func:`synthetic_image` factory (tests do not import conftest)."""
    return synthetic_image


@pytest.fixture
def image64() -> np.ndarray:
    return synthetic_image(64, 64, seed=1)


@pytest.fixture
def images_dir(tmp_path: Path) -> Path:
    """A folder with two tiny PNG images (64x64 and 48x80)."""
    from PIL import Image

    d = tmp_path / "images"
    d.mkdir()
    Image.fromarray(synthetic_image(64, 64, seed=1)).save(d / "a.png")
    Image.fromarray(synthetic_image(48, 80, seed=2)).save(d / "b.png")
    return d
