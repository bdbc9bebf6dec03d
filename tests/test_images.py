"""Tests of adapix.images: loading, saving, alpha coding, tensor conversions.

All images are tiny and generated here with Pillow; no data files.
"""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from adapix.errors import FormatError, InputError
from adapix.images import (
    RasterImage,
    crop,
    decode_alpha,
    encode_alpha,
    from_tensor,
    load_image,
    pad_to_multiple,
    save_image,
    to_pil,
    to_tensor,
)

RNG = np.random.default_rng(1234)


def _rgb(h=5, w=7):
    return RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _save(tmp_path, im: Image.Image, name: str, **kw) -> str:
    p = str(tmp_path / name)
    im.save(p, **kw)
    return p


def _srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(width, height, bit_depth, color_type, raw: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


def _no_temp_files(d) -> bool:
    return not [n for n in os.listdir(d) if n.endswith(".tmp")]


# ---------------------------------------------------------------------------------------------
# load_image: modes


def test_rgb_png(tmp_path):
    a = _rgb()
    p = _save(tmp_path, Image.fromarray(a, "RGB"), "a.png")
    img = load_image(p)
    assert img.pixels.dtype == np.uint8 and img.pixels.shape == (5, 7, 3)
    np.testing.assert_array_equal(img.pixels, a)
    assert img.alpha is None and img.icc is None and img.warnings == []
    assert (img.width, img.height, img.is_grey) == (7, 5, False)


def test_sources_bytes_pathlike_and_pil(tmp_path):
    a = _rgb()
    im = Image.fromarray(a, "RGB")
    p = tmp_path / "a.png"
    im.save(p)
    for src in (p, p.read_bytes(), bytearray(p.read_bytes()), im):
        np.testing.assert_array_equal(load_image(src).pixels, a)


def test_greyscale_l(tmp_path):
    a = RNG.integers(0, 256, size=(4, 6), dtype=np.uint8)
    img = load_image(_save(tmp_path, Image.fromarray(a, "L"), "g.png"))
    assert img.is_grey and img.pixels.shape == (4, 6, 1)
    np.testing.assert_array_equal(img.pixels[:, :, 0], a)
    assert img.alpha is None


def test_bilevel(tmp_path):
    im = Image.new("1", (5, 3), 0)
    im.putpixel((2, 1), 1)
    img = load_image(_save(tmp_path, im, "b.png"))
    assert img.is_grey
    assert img.pixels[1, 2, 0] == 255 and img.pixels[0, 0, 0] == 0


def test_la_alpha_kept(tmp_path):
    g = RNG.integers(0, 256, size=(4, 6), dtype=np.uint8)
    al = RNG.integers(0, 256, size=(4, 6), dtype=np.uint8)
    al[0, 0] = 3
    im = Image.fromarray(np.stack([g, al], axis=2), "LA")
    img = load_image(_save(tmp_path, im, "la.png"))
    assert img.is_grey
    np.testing.assert_array_equal(img.pixels[:, :, 0], g)
    np.testing.assert_array_equal(img.alpha, al)


def test_rgba_alpha_kept(tmp_path):
    a = _rgb()
    al = RNG.integers(0, 256, size=(5, 7), dtype=np.uint8)
    al[0, 0] = 0
    im = Image.fromarray(np.concatenate([a, al[:, :, None]], axis=2), "RGBA")
    img = load_image(_save(tmp_path, im, "rgba.png"))
    np.testing.assert_array_equal(img.pixels, a)
    np.testing.assert_array_equal(img.alpha, al)
    assert img.alpha.shape == (5, 7) and img.alpha.dtype == np.uint8


def test_rgba_opaque_alpha_dropped(tmp_path):
    a = _rgb()
    im = Image.fromarray(np.concatenate([a, np.full((5, 7, 1), 255, np.uint8)], axis=2), "RGBA")
    img = load_image(_save(tmp_path, im, "opaque.png"))
    assert img.alpha is None
    np.testing.assert_array_equal(img.pixels, a)


def test_palette_with_transparency(tmp_path):
    im = Image.new("P", (4, 3), 0)
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    im.putpixel((1, 1), 1)
    p = _save(tmp_path, im, "p.png", transparency=1)
    img = load_image(p)
    assert not img.is_grey and img.alpha is not None
    assert img.alpha[1, 1] == 0 and img.alpha[0, 0] == 255
    assert tuple(img.pixels[0, 0]) == (255, 0, 0)


def test_palette_without_transparency(tmp_path):
    im = Image.new("P", (4, 3), 0)
    im.putpalette([10, 20, 30] + [0] * (255 * 3))
    img = load_image(_save(tmp_path, im, "p.png"))
    assert img.alpha is None and img.pixels.shape == (3, 4, 3)
    assert tuple(img.pixels[2, 3]) == (10, 20, 30)


def test_cmyk_converted_with_warning(tmp_path):
    im = Image.new("CMYK", (3, 2), (255, 0, 0, 0))
    img = load_image(_save(tmp_path, im, "c.tif"))
    assert img.pixels.shape == (2, 3, 3)
    assert tuple(img.pixels[0, 0]) == (0, 255, 255)
    assert any("CMYK" in w for w in img.warnings)


@pytest.mark.parametrize("mode", ["YCbCr", "HSV", "LAB"])
def test_other_colour_spaces_to_rgb(mode):
    img = load_image(Image.new(mode, (3, 2), (100, 128, 128)))
    assert img.pixels.shape == (2, 3, 3) and img.pixels.dtype == np.uint8


def test_16bit_png_reduced(tmp_path):
    vals = np.array([[0, 1, 128, 129], [257, 32767, 32896, 65535]], dtype=np.uint16)
    im = Image.fromarray(vals)
    assert im.mode == "I;16"
    p = _save(tmp_path, im, "g16.png")
    img = load_image(p)
    assert "16-bit input reduced to 8-bit" in img.warnings
    expected = np.round(vals.astype(np.float64) / 257).astype(np.uint8)
    np.testing.assert_array_equal(img.pixels[:, :, 0], expected)
    assert img.is_grey


def test_16bit_rgb_png_warns(tmp_path):
    raw = b"\x00" + struct.pack(">HHH", 65535, 32896, 257)
    img = load_image(_png(1, 1, 16, 2, raw))
    assert "16-bit input reduced to 8-bit" in img.warnings
    assert img.pixels.shape == (1, 1, 3)
    assert img.pixels[0, 0, 0] == 255 and img.pixels[0, 0, 2] == 1


def test_float_image_clipped_with_warning():
    im = Image.fromarray(np.array([[-5.0, 12.4], [12.6, 300.0]], dtype=np.float32), "F")
    img = load_image(im)
    np.testing.assert_array_equal(img.pixels[:, :, 0], [[0, 12], [13, 255]])
    assert img.warnings


def test_exif_orientation_applied(tmp_path):
    im = Image.fromarray(_rgb(2, 4), "RGB")  # 4 wide, 2 high
    exif = Image.Exif()
    exif[0x0112] = 6
    p = _save(tmp_path, im, "o.jpg", exif=exif.tobytes())
    img = load_image(p)
    assert (img.width, img.height) == (2, 4)


def test_icc_round_trip(tmp_path):
    icc = _srgb_icc()
    a = _rgb()
    p = _save(tmp_path, Image.fromarray(a, "RGB"), "icc.png", icc_profile=icc)
    img = load_image(p)
    assert img.icc == icc
    assert to_pil(img).info["icc_profile"] == icc
    for ext in ("png", "jpg", "webp", "tif"):
        out = str(tmp_path / f"out.{ext}")
        save_image(img, out)
        assert load_image(out).icc == icc, ext
    np.testing.assert_array_equal(load_image(str(tmp_path / "out.png")).pixels, a)
    np.testing.assert_array_equal(load_image(str(tmp_path / "out.webp")).pixels, a)


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    p = str(tmp_path / "anim.gif")
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=50, loop=0)
    img = load_image(p)
    assert tuple(img.pixels[0, 0]) == (255, 0, 0)
    assert any("first frame" in w for w in img.warnings)


# ---------------------------------------------------------------------------------------------
# load_image: errors


def test_not_an_image(tmp_path):
    p = tmp_path / "x.png"
    p.write_bytes(b"this is not an image at all")
    with pytest.raises(InputError, match="x.png"):
        load_image(p)
    with pytest.raises(InputError):
        load_image(b"garbage")


def test_truncated_png(tmp_path):
    data = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8), "RGB").save(data, "PNG")
    p = tmp_path / "t.png"
    p.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    with pytest.raises(InputError, match="t.png"):
        load_image(p)


def test_truncated_jpeg(tmp_path):
    data = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8), "RGB").save(data, "JPEG", quality=95)
    p = tmp_path / "t.jpg"
    p.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    with pytest.raises(InputError, match="t.jpg"):
        load_image(p)


def test_zero_size(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(InputError, match="empty.png"):
        load_image(p)
    with pytest.raises(InputError):
        load_image(Image.new("RGB", (0, 4)))
    p0 = tmp_path / "w0.png"
    p0.write_bytes(_png(0, 1, 8, 2, b"\x00"))
    with pytest.raises(InputError, match="w0.png"):
        load_image(p0)


def test_max_pixels(tmp_path):
    p = _save(tmp_path, Image.new("RGB", (10, 10)), "m.png")
    assert load_image(p, max_pixels=100).width == 10
    with pytest.raises(InputError, match="99"):
        load_image(p, max_pixels=99)


def test_decompression_bomb_becomes_input_error(tmp_path, monkeypatch):
    p = _save(tmp_path, Image.new("RGB", (64, 64)), "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(InputError, match="bomb.png"):
        load_image(p)


def test_directory_and_missing(tmp_path):
    with pytest.raises(InputError):
        load_image(tmp_path)
    with pytest.raises(InputError, match="nope.png"):
        load_image(tmp_path / "nope.png")


# ---------------------------------------------------------------------------------------------
# save_image


def test_save_unknown_extension_leaves_nothing(tmp_path):
    img = load_image(Image.fromarray(_rgb(), "RGB"))
    with pytest.raises(InputError, match=r"\.png"):
        save_image(img, tmp_path / "out.xyz")
    with pytest.raises(InputError):
        save_image(img, tmp_path / "noext")
    assert os.listdir(tmp_path) == []


def test_save_replaces_existing_file(tmp_path):
    p = tmp_path / "out.png"
    p.write_bytes(b"old content")
    a = _rgb()
    save_image(RasterImage(pixels=a, alpha=None, icc=None, warnings=[]), p)
    np.testing.assert_array_equal(load_image(p).pixels, a)
    assert sorted(os.listdir(tmp_path)) == ["out.png"]


def test_save_explicit_format_and_pil_input(tmp_path):
    a = _rgb()
    p = tmp_path / "out.dat"
    save_image(Image.fromarray(a, "RGB"), p, format="png")
    np.testing.assert_array_equal(load_image(p).pixels, a)


def test_save_failure_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "out.png"
    p.write_bytes(b"old content")

    def broken_save(self, fp, format=None, **params):
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(InputError, match="out.png"):
        save_image(load_image(Image.fromarray(_rgb(), "RGB")), p)
    assert p.read_bytes() == b"old content"
    assert sorted(os.listdir(tmp_path)) == ["out.png"]


def test_save_alpha_to_jpeg_refused(tmp_path):
    img = RasterImage(pixels=_rgb(), alpha=np.zeros((5, 7), np.uint8), icc=None, warnings=[])
    with pytest.raises(InputError, match="alpha"):
        save_image(img, tmp_path / "a.jpg")
    assert os.listdir(tmp_path) == []


def test_save_missing_directory(tmp_path):
    with pytest.raises(InputError):
        save_image(load_image(Image.new("RGB", (2, 2))), tmp_path / "no" / "such" / "dir.png")


def test_save_load_grey_and_alpha(tmp_path):
    g = RNG.integers(0, 256, (4, 6, 1), dtype=np.uint8)
    al = RNG.integers(0, 255, (4, 6), dtype=np.uint8)
    for alpha in (None, al):
        img = RasterImage(pixels=g, alpha=alpha, icc=None, warnings=[])
        assert to_pil(img).mode == ("L" if alpha is None else "LA")
        p = tmp_path / "g.png"
        save_image(img, p)
        back = load_image(p)
        np.testing.assert_array_equal(back.pixels, g)
        if alpha is None:
            assert back.alpha is None
        else:
            np.testing.assert_array_equal(back.alpha, al)
    assert _no_temp_files(tmp_path)


# ---------------------------------------------------------------------------------------------
# alpha coding


def test_alpha_round_trip_and_size_check():
    al = RNG.integers(0, 256, (9, 13), dtype=np.uint8)
    data = encode_alpha(al)
    assert isinstance(data, bytes)
    np.testing.assert_array_equal(decode_alpha(data, 13, 9), al)
    with pytest.raises(FormatError):
        decode_alpha(data, 9, 13)
    with pytest.raises(FormatError):
        decode_alpha(b"not a png", 13, 9)
    with pytest.raises(FormatError):
        decode_alpha(data[: len(data) // 2], 13, 9)


# ---------------------------------------------------------------------------------------------
# tensors


def test_pad_1x1():
    x = torch.tensor([0.25, 0.5, 0.75]).view(1, 3, 1, 1)
    y, hw = pad_to_multiple(x, 64)
    assert y.shape == (1, 3, 64, 64) and hw == (1, 1)
    for c, v in enumerate((0.25, 0.5, 0.75)):
        assert torch.all(y[0, c] == v)
    assert torch.equal(crop(y, hw), x)


def test_pad_17x33():
    x = torch.rand(2, 3, 17, 33)
    y, hw = pad_to_multiple(x, 64)
    assert y.shape == (2, 3, 64, 64) and hw == (17, 33)
    assert torch.equal(y[:, :, :17, :33], x)
    assert torch.equal(y[:, :, 17:, :33], x[:, :, 16:17, :].expand(-1, -1, 47, -1))
    assert torch.equal(y[:, :, :17, 33:], x[:, :, :, 32:33].expand(-1, -1, -1, 31))
    assert torch.all(y[:, :, 17:, 33:] == x[:, :, 16:17, 32:33])
    assert torch.equal(crop(y, hw), x)


def test_pad_already_multiple():
    x = torch.rand(1, 3, 16, 32)
    y, hw = pad_to_multiple(x, 16)
    assert torch.equal(y, x) and hw == (16, 32)


def test_tensor_round_trip_rgb():
    a = np.arange(16 * 16 * 3, dtype=np.int64).reshape(16, 16, 3) % 256
    a = a.astype(np.uint8)
    img = RasterImage(pixels=a, alpha=None, icc=None, warnings=[])
    t = to_tensor(img)
    assert t.dtype == torch.float32 and t.shape == (1, 3, 16, 16)
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    back = from_tensor(t, grey=False)
    assert back.dtype == np.uint8 and back.shape == (16, 16, 3)
    np.testing.assert_array_equal(back, a)


def test_tensor_round_trip_grey():
    a = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    img = RasterImage(pixels=a, alpha=None, icc=None, warnings=[])
    t = to_tensor(img)
    assert t.shape == (1, 3, 16, 16)
    assert torch.equal(t[:, 0], t[:, 1]) and torch.equal(t[:, 0], t[:, 2])
    back = from_tensor(t, grey=True)
    assert back.shape == (16, 16, 1)
    np.testing.assert_array_equal(back, a)


def test_from_tensor_clamps_and_rounds_half_even():
    # pick k where (k + 0.5) / 255 * 255 is exactly k + 0.5 in float32, so the tie is real
    ks = [k for k in range(0, 254) if float(torch.tensor((k + 0.5) / 255, dtype=torch.float32) * 255) == k + 0.5][:4]
    assert ks
    vals = [-0.5, 2.0, float("nan")] + [(k + 0.5) / 255 for k in ks]
    x = torch.tensor(vals, dtype=torch.float32).view(1, 1, 1, -1).expand(1, 3, 1, -1)
    out = from_tensor(x, grey=False)[0, :, 0]
    expected = [0, 255, 0] + [k if k % 2 == 0 else k + 1 for k in ks]
    np.testing.assert_array_equal(out, expected)


def test_pillow_limit_follows_max_pixels(tmp_path, monkeypatch):
    """Pillow's own bomb limit (lower than ours here) does not refuse what --max-pixels allows,
    refuses what is far above it, and is restored afterwards."""
    p = _save(tmp_path, Image.new("RGB", (64, 64)), "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    assert load_image(p, max_pixels=64 * 64).width == 64
    assert Image.MAX_IMAGE_PIXELS == 100
    with pytest.raises(InputError, match="big.png"):
        load_image(p, max_pixels=1000)  # 4096 > 2 x 1000: Pillow refuses before decoding
