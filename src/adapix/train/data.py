"""Training data: image folders decoded once into memory, random crops and flips.

Photos whose short side exceeds ``max_side`` are downscaled (area filter) so that the short side
equals ``max_side``: this removes sensor noise and JPEG artefacts of the sources and makes a crop
hold more content. Images smaller than the crop are skipped (counted, never a crash).
Batches are (B, 3, crop, crop) float32 in [0, 1].
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".ppm", ".bmp", ".tif", ".tiff"}


def list_images(folder: str | os.PathLike) -> list[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())


def load_rgb(path: Path, max_side: int | None) -> np.ndarray | None:
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if max_side:
                short = min(im.size)
                if short > max_side:
                    f = max_side / short
                    im = im.resize((round(im.width * f), round(im.height * f)), Image.BOX)
            return np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError):
        return None


@dataclass
class ImageSet:
    images: list[np.ndarray]
    skipped: int

    def __len__(self) -> int:
        return len(self.images)


def load_images(paths: list[Path], crop: int, max_side: int | None = 512,
                progress: bool = True) -> ImageSet:
    """Decodes the images (downscaled to ``max_side``); those smaller than ``crop`` are skipped."""
    images, skipped = [], 0
    for p in tqdm(paths, desc="loading training images", disable=not progress, leave=False):
        a = load_rgb(p, max_side)
        if a is None or min(a.shape[:2]) < crop:
            skipped += 1
            continue
        images.append(a)
    if not images:
        raise ValueError(f"no usable training image (short side >= {crop} px)")
    return ImageSet(images, skipped)


def load_folder(folder, crop: int, max_side: int | None = 512, limit: int | None = None,
                progress: bool = True) -> ImageSet:
    paths = list_images(folder)
    return load_images(paths[:limit] if limit else paths, crop, max_side, progress)


class CropSampler:
    """Draws random crops with random horizontal flips from an ImageSet, reproducibly."""

    def __init__(self, data: ImageSet, crop: int, batch: int, generator: torch.Generator):
        self.data, self.crop, self.batch, self.gen = data, crop, batch, generator

    def _randint(self, hi: int) -> int:
        return int(torch.randint(0, hi, (1,), generator=self.gen).item())

    def __call__(self) -> torch.Tensor:
        c = self.crop
        out = np.empty((self.batch, c, c, 3), dtype=np.uint8)
        for i in range(self.batch):
            img = self.data.images[self._randint(len(self.data))]
            y = self._randint(img.shape[0] - c + 1)
            x = self._randint(img.shape[1] - c + 1)
            patch = img[y:y + c, x:x + c]
            if self._randint(2):
                patch = patch[:, ::-1]
            out[i] = patch
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)
