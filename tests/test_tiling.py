"""Tests of tiled coding (adapix.tiling, the TILE_INDEX of adapix.container, Codec with tiles)
with the tiny test model: grid geometry, bit-exact round trips, header fields, corrupt tile
indexes, the max-pixels limit, and the CLI."""

from __future__ import annotations

import dataclasses
import json
import struct

import numpy as np
import pytest
from PIL import Image

from adapix import container, tiling
from adapix.cli.decode import main as decode_main
from adapix.cli.encode import main as encode_main
from adapix.cli.info import main as info_main
from adapix.codec import Codec
from adapix.container import ApxFile, SectionType
from adapix.errors import AdapixError, FormatError
from adapix.images import RasterImage
from adapix.model import AdapixModel
from adapix.tiling import TileGrid, check_tile_size, choose_tile_size
from helpers import repack

H, W = 200, 330


def _picture(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth colour ramps, a block and noise: (h, w, 3) uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([30 + 190 * xx / (w - 1), 50 + 150 * yy / (h - 1),
                    128 + 90 * np.sin(xx / 7.0) * np.cos(yy / 11.0)], axis=-1)
    img[h // 4: h // 2, w // 3: w // 2] = (230, 30, 60)
    img += rng.normal(0.0, 5.0, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def image() -> RasterImage:
    return RasterImage(_picture(H, W, seed=5))


# ---- geometry ------------------------------------------------------------------------------------

@pytest.mark.parametrize("h, w, t, rows, cols", [
    (200, 330, 64, 4, 6), (200, 330, 128, 2, 3), (200, 330, 1024, 1, 1), (64, 64, 64, 1, 1),
    (65, 64, 64, 2, 1), (1, 1, 64, 1, 1), (1000, 1, 128, 8, 1),
])
def test_grid_covers_every_pixel_once(h, w, t, rows, cols):
    grid = TileGrid(h, w, t)
    assert (grid.rows, grid.cols, grid.count, len(grid)) == (rows, cols, rows * cols, rows * cols)
    cover = np.zeros((h, w), np.int32)
    tiles = list(grid)
    assert [tl.index for tl in tiles] == list(range(grid.count))
    for tl in tiles:
        assert 1 <= tl.height <= t and 1 <= tl.width <= t
        assert tl.y0 % t == 0 and tl.x0 % t == 0  # row-major grid anchored at the top-left
        cover[tl.slices] += 1
    assert (cover == 1).all()
    # only the last row / column may be smaller than the tile size
    for tl in tiles:
        r, c = divmod(tl.index, grid.cols)
        assert tl.height == t or r == grid.rows - 1
        assert tl.width == t or c == grid.cols - 1
    last = tiles[-1]
    assert (last.y1, last.x1) == (h, w)
    assert (last.height, last.width) == (h - (rows - 1) * t, w - (cols - 1) * t)


def test_edge_tiles_of_200x330_in_128():
    grid = TileGrid(200, 330, 128)
    sizes = [(tl.height, tl.width) for tl in grid]
    assert sizes == [(128, 128), (128, 128), (128, 74), (72, 128), (72, 128), (72, 74)]
    assert grid.describe() == "128 px: 3 x 2 = 6 tiles (columns x rows)"
    with pytest.raises(IndexError):
        grid.tile(6)
    with pytest.raises(ValueError):
        TileGrid(0, 5, 64)


def test_cut_and_paste_rebuild_the_image(image):
    grid = TileGrid(H, W, 64)
    out = np.zeros_like(image.pixels)
    for tl in grid:
        block = tiling.cut(image.pixels, tl)
        assert block.base is not None  # a view
        tiling.paste(out, tl, block.copy())
    assert np.array_equal(out, image.pixels)
    with pytest.raises(ValueError):
        tiling.paste(out, grid.tile(0), np.zeros((3, 3, 3), np.uint8))


def test_squared_error_is_exact():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (50, 40, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (50, 40, 3), dtype=np.uint8)
    expected = int(((a.astype(np.int64) - b.astype(np.int64)) ** 2).sum())
    assert tiling.squared_error(a, b) == expected
    assert tiling.squared_error(a, a) == 0


def test_tile_size_choice():
    auto = tiling.AUTO_TILE_PIXELS
    assert choose_tile_size(2048, 2048) == 0  # 4 MP exactly: not tiled
    assert choose_tile_size(H, W) == 0
    assert choose_tile_size(auto // 64 + 1, 64) == tiling.DEFAULT_TILE_SIZE  # padded area counts
    assert choose_tile_size(auto // 64, 64) == 0
    assert choose_tile_size(auto // 64, 1) == 0
    assert choose_tile_size(auto // 64 + 1, 1) == tiling.DEFAULT_TILE_SIZE
    assert choose_tile_size(10_000, 10_000) == tiling.DEFAULT_TILE_SIZE
    assert choose_tile_size(4000, 4000, 0) == 0  # asked for, within the unit limit
    assert choose_tile_size(10, 10, 128) == 128  # asked for: tiled even as a single tile
    assert check_tile_size(np.int64(256)) == 256
    assert check_tile_size(tiling.MAX_TILE_SIZE) == 65472
    for bad in (-64, 1, 63, 100, 65536, 65472 + 64, 64.0, True, "64", None):
        with pytest.raises(AdapixError):
            check_tile_size(bad)
        if bad is not None:
            with pytest.raises(AdapixError):
                choose_tile_size(10, 10, bad)


# ---- round trips ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiled(tiny_codec, image):
    """tile size -> EncodeResult of the 200x330 image."""
    return {t: tiny_codec.encode_ex(image, quality=60, tile_size=t) for t in (64, 128)}


@pytest.mark.parametrize("tile", [64, 128])
def test_round_trip_equals_encoder_reconstruction(tiny_codec, image, tiled, tile):
    res = tiled[tile]
    assert res.tile_size == tile
    dec = tiny_codec.decode_ex(res.data)
    assert dec.image.pixels.shape == (H, W, 3)
    assert np.array_equal(dec.image.pixels, res.reconstruction.pixels)
    h = dec.header
    assert h.tiled and h.tile_size == tile and h.flags & container.FLAG_TILED
    assert (h.width, h.height) == (W, H)
    f = container.unpack(res.data)
    n = TileGrid(H, W, tile).count
    assert len(f.tile_index) == 4 + 12 * n
    assert struct.unpack(">I", f.tile_index[:4])[0] == n
    assert len(container.tile_streams(f)) == n
    # the PSNR accumulated over tiles is the PSNR of the whole reconstruction
    from adapix.codec import psnr_uint8
    assert res.psnr == pytest.approx(psnr_uint8(image.pixels, res.reconstruction.pixels), abs=1e-9)
    assert res.bpp == 8 * len(res.data) / (H * W)
    assert res.est_bpp > 0


def test_each_tile_is_the_per_image_path(tiny_codec, image, tiled):
    """Tile i's streams are exactly what encoding the tile alone as an image gives."""
    f = container.unpack(tiled[128].data)
    grid = TileGrid(H, W, 128)
    streams = container.tile_streams(f)
    for tl in (grid.tile(0), grid.tile(grid.count - 1)):
        alone = container.unpack(tiny_codec.encode(RasterImage(np.ascontiguousarray(
            tiling.cut(image.pixels, tl))), quality=60, tile_size=0))
        assert streams[tl.index] == (alone.model_stream, alone.hyper, alone.content)


def test_one_tile_equals_untiled(tiny_codec, image):
    one = tiny_codec.encode_ex(image, quality=60, tile_size=512)
    plain = tiny_codec.encode_ex(image, quality=60, tile_size=0)
    assert container.unpack(one.data).header.tile_size == 512
    assert not container.unpack(plain.data).header.tiled
    assert np.array_equal(one.reconstruction.pixels, plain.reconstruction.pixels)
    fo, fp = container.unpack(one.data), container.unpack(plain.data)
    assert (fo.model_stream, fo.hyper, fo.content) == (fp.model_stream, fp.hyper, fp.content)
    assert len(one.data) == len(plain.data) + 5 + 4 + 12  # TILE_INDEX section of one tile
    assert np.array_equal(tiny_codec.decode_ex(one.data).image.pixels, one.reconstruction.pixels)


def test_auto_tiling_above_the_threshold(tiny_codec, image, monkeypatch):
    assert tiny_codec.encode_ex(image, quality=30).tile_size == 0
    monkeypatch.setattr(tiling, "AUTO_TILE_PIXELS", H * W - 1)
    monkeypatch.setattr(tiling, "DEFAULT_TILE_SIZE", 128)
    res = tiny_codec.encode_ex(image, quality=30)
    assert res.tile_size == 128 and container.peek_header(res.data).tile_size == 128
    assert tiny_codec.encode_ex(image, quality=30, tile_size=0).tile_size == 0
    assert np.array_equal(tiny_codec.decode_ex(res.data).image.pixels, res.reconstruction.pixels)


def test_tiles_bound_the_tensors(tiny_codec, image, monkeypatch):
    """The model never sees more than one padded tile, encoding or decoding."""
    shapes = []
    real_c, real_d = AdapixModel.compress, AdapixModel.decompress

    def compress(self, x, *a, **k):
        shapes.append(tuple(x.shape[-2:]))
        return real_c(self, x, *a, **k)

    def decompress(self, streams, hw, *a, **k):
        shapes.append(tuple(hw))
        return real_d(self, streams, hw, *a, **k)

    monkeypatch.setattr(AdapixModel, "compress", compress)
    monkeypatch.setattr(AdapixModel, "decompress", decompress)
    data = tiny_codec.encode(image, quality=50, tile_size=64)
    tiny_codec.decode(data)
    assert len(shapes) == 2 * TileGrid(H, W, 64).count
    assert all(h <= 64 and w <= 64 for h, w in shapes)


def test_alpha_icc_and_grey_tiled(tiny_codec, synth_image):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgba = synth_image(150, 140, seed=2, channels=4)
    img = RasterImage(np.ascontiguousarray(rgba[..., :3]),
                      alpha=np.ascontiguousarray(rgba[..., 3]), icc=icc)
    res = tiny_codec.encode_ex(img, quality=40, tile_size=64)
    dec = tiny_codec.decode_ex(res.data)
    assert dec.header.alpha and dec.header.icc and dec.header.tiled
    assert np.array_equal(dec.image.alpha, img.alpha)
    assert dec.image.icc == icc
    assert np.array_equal(dec.image.pixels, res.reconstruction.pixels)
    pil = tiny_codec.decode(res.data)
    assert pil.mode == "RGBA" and pil.size == (140, 150)

    grey = RasterImage(synth_image(130, 70, seed=3, channels=1))
    res = tiny_codec.encode_ex(grey, quality=40, tile_size=64)
    dec = tiny_codec.decode_ex(res.data)
    assert dec.header.color == 1 and dec.image.pixels.shape == (130, 70, 1)
    assert np.array_equal(dec.image.pixels, res.reconstruction.pixels)


@pytest.mark.parametrize("profile", ["balanced", "best"])
def test_profiles_apply_per_tile(tiny_codec, synth_image, profile):
    img = RasterImage(synth_image(70, 100, seed=4))
    res = tiny_codec.encode_ex(img, quality=55, profile=profile, time_budget=0.6, tile_size=64)
    dec = tiny_codec.decode_ex(res.data)
    assert dec.header.profile == profile and dec.header.tiled
    assert np.array_equal(dec.image.pixels, res.reconstruction.pixels)


# ---- hostile files ----------------------------------------------------------------------------------

def _index(entries: list[tuple[int, int, int]], count: int | None = None) -> bytes:
    n = len(entries) if count is None else count
    return struct.pack(">I", n) + b"".join(struct.pack(">III", *e) for e in entries)


def test_corrupt_tile_index_raises_format_error(tiny_codec, tiled):
    data = tiled[128].data
    f = container.unpack(data)
    entries = list(struct.iter_unpack(">III", f.tile_index[4:]))
    n = len(entries)
    moved = [list(e) for e in entries]
    moved[0][2] += 1
    moved[1][2] -= 1  # same totals, tile boundaries moved: the entropy decoder must cope
    bad_variants = {
        "missing index": {"sections": {SectionType.TILE_INDEX: None}},
        "empty index": {"sections": {SectionType.TILE_INDEX: b""}},
        "short index": {"sections": {SectionType.TILE_INDEX: b"\x00\x00"}},
        "count too small": {"sections": {SectionType.TILE_INDEX: _index(entries[:-1])}},
        "count too large": {"sections": {SectionType.TILE_INDEX: _index(entries + [(0, 0, 0)])}},
        "count disagrees with entries": {"sections": {SectionType.TILE_INDEX:
                                                      _index(entries, count=n + 1)}},
        "trailing index bytes": {"sections": {SectionType.TILE_INDEX: f.tile_index + b"\x00"}},
        "lengths exceed section": {"sections": {SectionType.TILE_INDEX: _index(
            [(e[0], e[1], e[2] + 1) for e in entries])}},
        "lengths short of section": {"sections": {SectionType.CONTENT: f.content + b"\x00"}},
        "huge length": {"sections": {SectionType.TILE_INDEX: _index(
            [(0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)] * n)}},
        "other tile size": {"tile_size": 64},
        "not tiled": {"tiled": False, "tile_size": 0},
        "missing content": {"sections": {SectionType.CONTENT: None}},
    }
    for name, change in bad_variants.items():
        with pytest.raises(FormatError):
            tiny_codec.decode_ex(repack(data, max_pixels=2**40, **change))
            pytest.fail(name)
    # moved boundaries with consistent totals: FormatError or an image of the right size
    try:
        dec = tiny_codec.decode_ex(repack(data, max_pixels=2**40, sections={SectionType.TILE_INDEX:
                                                           _index([tuple(e) for e in moved])}))
        assert dec.image.pixels.shape == (H, W, 3)
    except FormatError:
        pass


def test_tile_streams_checks(tiled):
    f = container.unpack(tiled[64].data)
    with pytest.raises(FormatError):
        container.tile_streams(ApxFile(dataclasses.replace(f.header, tiled=False, tile_size=0),
                                       f.sections))
    assert container.tile_count(f.header) == TileGrid(H, W, 64).count
    assert container.tile_count(dataclasses.replace(f.header, tiled=False, tile_size=0)) == 0
    rebuilt = container.tile_sections(container.tile_streams(f))
    assert all(rebuilt[k] == f.sections[k] for k in rebuilt)


def test_max_pixels_refuses_before_allocation(tiny_weights, tiny_codec, tiled, monkeypatch):
    import adapix.codec as codec_mod

    data = tiled[128].data
    small = Codec(tiny_weights, max_pixels=H * W - 1)

    def no_alloc(*a, **k):
        raise AssertionError("output allocated")

    monkeypatch.setattr(codec_mod.np, "empty", no_alloc)
    with pytest.raises(FormatError, match="max-pixels"):
        small.decode_ex(data)
    # a header claiming a huge tiled image: refused by the default limit (256 MP)
    huge = repack(data, max_pixels=2**40, width=60_000, height=60_000)
    with pytest.raises(FormatError, match="limit"):
        tiny_codec.decode_ex(huge)
    # within the limit, but the index does not match the (claimed) grid: refused before allocation
    big = repack(data, max_pixels=2**40, width=16_000, height=16_000)
    with pytest.raises(FormatError, match="tile index"):
        tiny_codec.decode_ex(big)


def test_unit_larger_than_the_working_set_limit_is_refused(tiny_codec, tiled, image, monkeypatch):
    """A small file may not make the decoder code a huge unit at once: an untiled image, or a
    tile, above tiling.MAX_UNIT_PIXELS is refused before allocation, whatever --max-pixels says;
    the encoder refuses to write one."""
    import adapix.codec as codec_mod

    side = 8192  # 64 MP > 32 MP, below the default max-pixels of 256 MP
    plain = tiny_codec.encode(image, quality=20, tile_size=0)
    monkeypatch.setattr(codec_mod.np, "empty", lambda *a, **k: pytest.fail("allocated"))
    with pytest.raises(FormatError, match="use smaller tiles"):
        tiny_codec.decode_ex(repack(plain, max_pixels=2**40, width=side, height=side))
    with pytest.raises(FormatError, match="use smaller tiles"):
        tiny_codec.decode_ex(repack(tiled[128].data, max_pixels=2**40, width=side, height=side, tile_size=side))
    monkeypatch.undo()
    assert choose_tile_size(side, side) == tiling.DEFAULT_TILE_SIZE
    with pytest.raises(AdapixError, match="use smaller tiles"):
        choose_tile_size(side, side, 0)
    with pytest.raises(AdapixError, match="use smaller tiles"):
        choose_tile_size(side, side, side)
    assert tiling.unit_pixels(100, 70, 0) == 128 * 128
    assert tiling.unit_pixels(5000, 300, 1024) == 1024 * 320


def test_untiled_file_with_a_tile_index_is_refused(tiny_codec, tiled, image):
    plain = tiny_codec.encode(image, quality=20, tile_size=0)
    with pytest.raises(FormatError):
        tiny_codec.decode_ex(repack(plain, max_pixels=2**40, sections={SectionType.TILE_INDEX: _index([])}))


# ---- CLI ----------------------------------------------------------------------------------------------

def test_cli_tile_size_info_and_decode(tiny_weights, image, tmp_path, capsys):
    src = tmp_path / "big.png"
    Image.fromarray(image.pixels).save(src)
    apx, out = tmp_path / "big.apx", tmp_path / "back.png"
    model = ["--model", str(tiny_weights)]
    assert encode_main([str(src), "-o", str(apx), "--tile-size", "128", "-q", "45"] + model) == 0
    assert "tiles of 128 px" in capsys.readouterr().out
    assert info_main([str(apx)] + model) == 0
    text = capsys.readouterr().out
    assert "tile size" in text and "128 px" in text and "3 x 2 = 6" in text
    assert decode_main([str(apx), "-o", str(out)] + model) == 0
    codec = Codec(tiny_weights)
    expected = codec.encode_ex(str(src), quality=45, tile_size=128).reconstruction.pixels
    assert np.array_equal(np.asarray(Image.open(out)), expected)
    # 0 disables tiling; auto is the default
    assert encode_main([str(src), "-o", str(apx), "--tile-size", "0"] + model) == 0
    assert not container.peek_header(apx.read_bytes()).tiled
    assert encode_main([str(src), "-o", str(apx), "--tile-size", "auto"] + model) == 0
    assert not container.peek_header(apx.read_bytes()).tiled
    capsys.readouterr()
    for bad in ("100", "-64", "abc", "65536"):
        try:
            status = encode_main([str(src), "-o", str(apx), "--tile-size", bad] + model)
        except SystemExit as exc:
            status = exc.code
        assert status == 2


def test_bench_large_runs_file_to_file(tiny_weights, tmp_path, capsys):
    from adapix.bench.large import run_large, write_large_picture
    from adapix.cli.bench import main as bench_main

    pic = write_large_picture(tmp_path / "p.png", 150, 70, seed=1)
    with Image.open(pic) as im:
        assert im.size == (150, 70)
    report = run_large([(150, 70)], (0, 64), threads=1, model=str(tiny_weights),
                       workdir=tmp_path / "work")
    assert not report.skipped
    plain, tiled_row = report.results
    assert (plain.tile_size, plain.tiles) == (0, 1)
    assert (tiled_row.tile_size, tiled_row.tiles) == (64, 6)
    for r in report.results:
        assert r.encode_peak_mb > 0 and r.decode_peak_mb > 0 and r.encode_s > 0 and r.bytes > 0
    assert not any((tmp_path / "work").iterdir())  # nothing kept
    out = tmp_path / "large.json"
    status = bench_main(["--large", "--sizes", "100x64", "--tile-sizes", "auto,64", "--threads",
                         "1", "--model", str(tiny_weights), "--out", str(out), "--no-progress"])
    assert status == 0
    text = capsys.readouterr().out
    assert "not tiled (auto)" in text and "2 tiles of 64" in text
    assert len(json.loads(out.read_text())["results"]) == 2
    assert bench_main(["--large", "--tile-sizes", "100", "--out", "none"]) == 2
