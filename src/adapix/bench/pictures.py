"""The benchmark's test pictures: a deterministic synthetic photo, or a file tiled/cropped."""

from __future__ import annotations

import math
import os

import numpy as np


def _value_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Smooth random field in about [-1, 1]: a random grid, bicubically upsampled."""
    from PIL import Image

    gh, gw = max(2, int(math.ceil(height / cell)) + 1), max(2, int(math.ceil(width / cell)) + 1)
    grid = rng.uniform(-1.0, 1.0, (gh, gw)).astype(np.float32)
    im = Image.fromarray(grid).resize((width, height), Image.BICUBIC)
    return np.asarray(im, dtype=np.float32)


def synthetic_photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A deterministic photo-like picture, (height, width, 3) uint8: a shaded background, soft-edged
    shaded ellipses and rectangles, fractal texture of varying strength, and sensor-like noise.
    The same (width, height, seed) always gives the same pixels."""
    rng = np.random.default_rng(seed)
    s = float(max(width, height))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = xx / s, yy / s
    top, bottom = rng.uniform(90, 220, 3), rng.uniform(20, 120, 3)
    vv = (yy / max(height - 1, 1))[..., None]
    img = (top * (1 - vv) + bottom * vv).astype(np.float32)
    # fractal texture (sum of octaves), its strength itself a smooth field: flat and busy areas
    texture = sum(_value_noise(rng, height, width, c) * a
                  for c, a in ((s / 6, 1.0), (s / 24, 0.5), (s / 96, 0.3), (4.0, 0.2)))
    strength = 0.5 + 0.5 * _value_noise(rng, height, width, s / 3)
    img += (18.0 * texture * strength)[..., None]
    for i in range(14):
        cx, cy = rng.uniform(0, width / s), rng.uniform(0, height / s)
        rx, ry = rng.uniform(0.04, 0.25, 2)
        ang = rng.uniform(0, math.pi)
        soft = float(rng.choice([0.004, 0.01, 0.04]))  # edge width: sharp .. out of focus
        colour = rng.uniform(10, 245, 3).astype(np.float32)
        stripes = rng.uniform(0, 30) if i % 4 == 1 else 0.0  # fabric-like fine pattern
        tex_amp = rng.uniform(0, 25)
        # work inside the shape's bounding box (the mask is < 1e-4 outside it)
        r = max(rx, ry) * (1 + 10 * soft) * math.sqrt(2) * s
        x0, x1 = max(0, int(cx * s - r)), min(width, int(cx * s + r) + 1)
        y0, y1 = max(0, int(cy * s - r)), min(height, int(cy * s + r) + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        du, dv = u[y0:y1, x0:x1] - cx, v[y0:y1, x0:x1] - cy
        a = (du * math.cos(ang) + dv * math.sin(ang)) / rx
        b = (-du * math.sin(ang) + dv * math.cos(ang)) / ry
        dist = np.maximum(np.abs(a), np.abs(b)) if i % 3 == 2 else np.sqrt(a * a + b * b)
        mask = (1.0 / (1.0 + np.exp(np.clip((dist - 1.0) / soft, -50, 50))))[..., None]
        shade = 0.7 + 0.3 * np.clip(0.5 - 0.5 * (a * 0.6 + b * 0.8), 0, 1)  # lit from one side
        detail = tex_amp * texture[y0:y1, x0:x1] + stripes * np.sin(a * rx * s * 0.9)
        obj = colour * shade[..., None] + detail[..., None]
        img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - mask) + obj * mask
    img += rng.normal(0.0, 2.5, img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def image_from_file(path: str | os.PathLike, width: int, height: int) -> np.ndarray:
    """A picture file (e.g. a Kodak image) brought to (height, width, 3) uint8 without resampling:
    mirror-tiled when smaller, cropped (top-left) when larger, so its statistics stay those of
    the photo."""
    from ..images import load_image

    px = load_image(str(path)).pixels
    if px.shape[2] == 1:
        px = np.repeat(px, 3, axis=2)
    ph, pw = max(0, height - px.shape[0]), max(0, width - px.shape[1])
    if ph or pw:
        px = np.pad(px, ((0, ph), (0, pw), (0, 0)), mode="symmetric")
    return np.ascontiguousarray(px[:height, :width])


def make_picture(width: int, height: int, path: str | None = None, seed: int = 0) -> np.ndarray:
    """The benchmark's picture: from ``path`` (see :func:`image_from_file`) or synthetic."""
    return image_from_file(path, width, height) if path else synthetic_photo(width, height, seed)
