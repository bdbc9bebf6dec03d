"""Tiles of large images: the tile grid, cutting tiles out of an image and pasting them back.

An image larger than :data:`AUTO_TILE_PIXELS` (or any image, when a tile size is asked for) is
coded as a grid of disjoint square tiles of side ``tile_size`` (a multiple of 64), in row-major
order from the top-left corner; the tiles of the last column and of the last row are narrower or
shorter when the image size is not a multiple of the tile size. Every tile is coded on its own
with the per-image path (its own hyper latent z, model stream s and content), so the encoder and
the decoder hold the working set of one tile at a time next to the 8-bit image: peak memory grows
with the tile size, not with the image size (``docs/results.md``, "Large images").

Tiles do not overlap and nothing is blended: each tile is reconstructed exactly as the encoder
reconstructed it (bit-exact decoding), at the price of a possible discontinuity along tile
borders at low rates, and of a small rate overhead (each tile carries its own z, s and stream
flush bytes, and its border has less context). With the default tile size of 1024 the borders
are few and far apart.

The ``.apx`` side (the TILE_INDEX section and the per-tile streams) is in :mod:`adapix.container`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .errors import AdapixError

TILE_MULTIPLE = 64                    #: tile sides are multiples of this (the model's padding)
MAX_TILE_SIZE = 0xFFFF // 64 * 64     #: 65472, the largest multiple of 64 the header can carry
DEFAULT_TILE_SIZE = 1024              #: ~0.6 GB encoder working set per tile (docs/results.md)
AUTO_TILE_PIXELS = 4 * 2**20          #: images with more pixels are tiled unless told otherwise
#: The largest unit (a whole untiled image, or one tile), in pixels after padding to 64, that the
#: codec codes at once: its working set is ~440 bytes per pixel (docs/results.md, "Large
#: images"), so 32 MP is ~14 GB. Bigger images must be tiled; a file whose unit is bigger is
#: refused before anything is allocated, whatever --max-pixels says.
MAX_UNIT_PIXELS = 32 * 2**20


def unit_pixels(height: int, width: int, tile_size: int) -> int:
    """Padded pixel count of the largest unit coded at once (tile_size 0: the whole image)."""
    h, w = (min(height, tile_size), min(width, tile_size)) if tile_size else (height, width)
    return -(-h // TILE_MULTIPLE) * TILE_MULTIPLE * (-(-w // TILE_MULTIPLE) * TILE_MULTIPLE)


def check_unit(height: int, width: int, tile_size: int) -> None:
    """AdapixError unless the largest unit of this geometry is within MAX_UNIT_PIXELS."""
    n = unit_pixels(height, width, tile_size)
    if n > MAX_UNIT_PIXELS:
        what = f"tiles of {tile_size} px" if tile_size else "one piece (not tiled)"
        raise AdapixError(f"a {width}x{height} image coded as {what} needs {n} pixels at once, "
                          f"above the limit of {MAX_UNIT_PIXELS}; use smaller tiles")


@dataclass(frozen=True)
class Tile:
    """One tile: its index in row-major order and its pixel rectangle [y0, y1) x [x0, x1)."""

    index: int
    y0: int
    x0: int
    y1: int
    x1: int

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def slices(self) -> tuple[slice, slice]:
        """(rows, columns) to index an (H, W, ...) array with."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)


@dataclass(frozen=True)
class TileGrid:
    """The grid of ``tile_size`` tiles covering a ``height`` x ``width`` image."""

    height: int
    width: int
    tile_size: int

    def __post_init__(self) -> None:
        for name in ("height", "width", "tile_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TileGrid: {name} must be a positive integer, got {v!r}")

    @property
    def rows(self) -> int:
        return -(-self.height // self.tile_size)

    @property
    def cols(self) -> int:
        return -(-self.width // self.tile_size)

    @property
    def count(self) -> int:
        return self.rows * self.cols

    def __len__(self) -> int:
        return self.count

    def tile(self, index: int) -> Tile:
        if not 0 <= index < self.count:
            raise IndexError(f"tile {index} out of range 0..{self.count - 1}")
        r, c = divmod(index, self.cols)
        T = self.tile_size
        return Tile(index, r * T, c * T, min((r + 1) * T, self.height), min((c + 1) * T, self.width))

    def __iter__(self) -> Iterator[Tile]:
        return (self.tile(i) for i in range(self.count))

    def describe(self) -> str:
        """E.g. ``"1024 px: 3 x 2 = 6 tiles (columns x rows)"``."""
        return (f"{self.tile_size} px: {self.cols} x {self.rows} = {self.count} "
                f"tile{'s' if self.count != 1 else ''} (columns x rows)")


def check_tile_size(tile_size: object) -> int:
    """A valid tile side (a multiple of 64 in 64..65472), else :class:`AdapixError`."""
    if (isinstance(tile_size, bool) or not isinstance(tile_size, (int, np.integer))
            or not TILE_MULTIPLE <= tile_size <= MAX_TILE_SIZE or tile_size % TILE_MULTIPLE):
        raise AdapixError(f"tile size must be a multiple of {TILE_MULTIPLE} in "
                          f"{TILE_MULTIPLE}..{MAX_TILE_SIZE} (or 0: no tiling), got {tile_size!r}")
    return int(tile_size)


def choose_tile_size(height: int, width: int, requested: int | None = None) -> int:
    """The tile side to code a ``height`` x ``width`` image with; 0 means "not tiled".

    ``requested``: None chooses automatically (:data:`DEFAULT_TILE_SIZE` when the image has more
    than :data:`AUTO_TILE_PIXELS` pixels once padded to 64, else 0); 0 disables tiling; a valid tile size (see
    :func:`check_tile_size`) is used as given, even when the image fits in one tile."""
    if requested is None:
        tile = DEFAULT_TILE_SIZE if unit_pixels(height, width, 0) > AUTO_TILE_PIXELS else 0
    elif requested == 0 and not isinstance(requested, bool):
        tile = 0
    else:
        tile = check_tile_size(requested)
    check_unit(height, width, tile)
    return tile


def cut(image: np.ndarray, tile: Tile) -> np.ndarray:
    """The pixels of ``tile`` in an (H, W, ...) array: a view, no copy."""
    return image[tile.slices]


def paste(out: np.ndarray, tile: Tile, block: np.ndarray) -> None:
    """Writes ``block`` (the tile's pixels) into ``out`` at the tile's place."""
    target = out[tile.slices]
    if block.shape != target.shape:
        raise ValueError(f"tile {tile.index} is {block.shape}, its place is {target.shape}")
    target[...] = block


def squared_error(a: np.ndarray, b: np.ndarray) -> int:
    """Sum of squared differences of two uint8 arrays, exact (int64), without a float copy of
    the whole image: for PSNR accumulated over tiles."""
    d = a.astype(np.int64) - b.astype(np.int64)
    return int(np.square(d, out=d).sum())


__all__ = ["TILE_MULTIPLE", "MAX_TILE_SIZE", "DEFAULT_TILE_SIZE", "AUTO_TILE_PIXELS", "Tile",
           "TileGrid", "check_tile_size", "choose_tile_size", "cut", "paste", "squared_error"]
