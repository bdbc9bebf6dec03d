"""Tests of adapix.codec (Codec.encode_ex / decode_ex): errors users can cause, quality handling
and the measurements of EncodeResult."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from adapix import container
from adapix.codec import Codec, psnr_uint8
from adapix.container import SectionType
from adapix.errors import AdapixError, FormatError, ModelMismatchError
from adapix.images import RasterImage
from adapix.profiles import PROFILES
from adapix.weights import export_weights
from helpers import repack


@pytest.fixture(scope="module")
def encoded(tiny_codec):
    """(input RasterImage, EncodeResult) of a 37x45 RGB image."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:37, 0:45]
    px = np.stack([xx * 5, yy * 6, (xx + yy) * 3], axis=-1) + rng.integers(0, 20, (37, 45, 3))
    img = RasterImage(np.clip(px, 0, 255).astype(np.uint8))
    return img, tiny_codec.encode_ex(img, quality=42.5)


def _other_codec(make_model, tmp_path, seed: int, model_id: str) -> Codec:
    path = tmp_path / f"other-{seed}-{model_id}.safetensors"
    export_weights(make_model(seed=seed), path, model_id, fp16=False)
    return Codec(path)


def test_round_trip_sanity(tiny_codec, encoded):
    img, res = encoded
    dec = tiny_codec.decode_ex(res.data)
    assert np.array_equal(dec.image.pixels, res.reconstruction.pixels)
    assert dec.header.model_id == tiny_codec.model_id == "tiny-test"
    assert dec.header.weights_hash == tiny_codec.loaded.weights_hash
    pil = tiny_codec.decode(res.data)
    assert pil.mode == "RGB" and pil.size == (45, 37)
    assert np.array_equal(np.asarray(pil), dec.image.pixels)


def test_other_weights_raise_model_mismatch(tiny_codec, encoded, make_model, tmp_path):
    _, res = encoded
    same_id = _other_codec(make_model, tmp_path, seed=1, model_id=tiny_codec.model_id)
    assert same_id.loaded.weights_hash != tiny_codec.loaded.weights_hash
    with pytest.raises(ModelMismatchError):
        same_id.decode_ex(res.data)
    other_id = _other_codec(make_model, tmp_path, seed=0, model_id="another-model")
    with pytest.raises(ModelMismatchError):
        other_id.decode(res.data)
    # and the other way round
    with pytest.raises(ModelMismatchError):
        tiny_codec.decode(same_id.encode(RasterImage(np.zeros((8, 8, 3), np.uint8))))


def test_bit_flips_raise_format_error(tiny_codec, encoded):
    _, res = encoded
    data = res.data
    positions = sorted({0, 3, 4, 5, 9, 13, 14, 16, 20, 22, 30, len(data) // 2, len(data) - 5,
                        len(data) - 1} | set(range(40, len(data), max(1, len(data) // 25))))
    for pos in positions:
        for bit in (0, 7):
            bad = bytearray(data)
            bad[pos] ^= 1 << bit
            with pytest.raises(FormatError):
                tiny_codec.decode_ex(bytes(bad))


def test_truncated_and_extended_raise_format_error(tiny_codec, encoded):
    _, res = encoded
    data = res.data
    for n in sorted({0, 1, 3, 4, 5, 10, 22, 35, 36, 40, len(data) // 2, len(data) - 4,
                     len(data) - 1}):
        with pytest.raises(FormatError):
            tiny_codec.decode_ex(data[:n])
    for extra in (b"\x00", b"trailing", data):
        with pytest.raises(FormatError):
            tiny_codec.decode_ex(data + extra)


def test_foreign_files_raise_format_error(tiny_codec, tiny_weights):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, format="PNG")
    png = buf.getvalue()
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="JPEG")
    rng = np.random.default_rng(1)
    for data in (png, buf.getvalue(), tiny_weights.read_bytes()[:4096], b"",
                 rng.integers(0, 256, 300, dtype=np.uint8).tobytes(), b"\x89APX"):
        with pytest.raises(FormatError):
            tiny_codec.decode_ex(data)
        with pytest.raises(FormatError):
            tiny_codec.decode(data)


def test_damaged_sections_with_valid_crc_raise_only_format_error(tiny_codec, encoded):
    """Damage behind a correct checksum: the entropy decoders must report FormatError or decode
    something of the declared size -- never another exception (the ANS coder cannot detect every
    change). Missing sections and an odd-length content are always FormatError."""
    _, res = encoded
    f = container.unpack(res.data)
    content, hyper, ms = f.content, f.hyper, f.model_stream
    rng = np.random.default_rng(2)
    for kind in (SectionType.CONTENT, SectionType.HYPER, SectionType.MODEL_STREAM):
        with pytest.raises(FormatError):
            tiny_codec.decode_ex(repack(res.data, sections={kind: None}))
    with pytest.raises(FormatError):
        tiny_codec.decode_ex(repack(res.data, sections={SectionType.CONTENT: content[:-1]}))
    variants = [
        {"sections": {SectionType.CONTENT: b""}},
        {"sections": {SectionType.CONTENT: content[4:]}},
        {"sections": {SectionType.CONTENT: content[:-4]}},
        {"sections": {SectionType.CONTENT: content + b"\x01\x00\x00\x00"}},
        {"sections": {SectionType.CONTENT: rng.integers(0, 256, len(content),
                                                        dtype=np.uint8).tobytes()}},
        {"sections": {SectionType.HYPER: rng.integers(0, 256, 4 * max(1, len(hyper) // 4),
                                                      dtype=np.uint8).tobytes()}},
        {"sections": {SectionType.HYPER: hyper[:-1]}},
        {"sections": {SectionType.MODEL_STREAM: ms + b"\x00\x00\x00\x01"}},
        {"sections": {SectionType.MODEL_STREAM: b""}},
        {"width": 200},
        {"height": 130, "width": 3},
        {"quality": 99.0},
    ]
    outcomes = []
    for v in variants:
        data = repack(res.data, **v)
        try:
            dec = tiny_codec.decode_ex(data)
        except FormatError:
            outcomes.append("FormatError")
            continue
        h = dec.header
        assert dec.image.pixels.shape == (h.height, h.width, 3)
        outcomes.append("decoded")
    assert "FormatError" in outcomes


def test_corrupt_alpha_section_raises_format_error(tiny_codec):
    px = np.full((10, 12, 3), 100, np.uint8)
    alpha = np.tile(np.arange(12, dtype=np.uint8) * 20, (10, 1))
    data = tiny_codec.encode(RasterImage(px, alpha=alpha), quality=10)
    assert np.array_equal(tiny_codec.decode_ex(data).image.alpha, alpha)
    bad = repack(data, sections={SectionType.ALPHA: b"\x89PNG garbage"})
    with pytest.raises(FormatError):
        tiny_codec.decode_ex(bad)


@pytest.mark.parametrize("quality", [-0.01, 100.01, -1, 101, 1e9, math.nan, math.inf, -math.inf,
                                     "50", None, [50]])
def test_quality_out_of_range_raises_adapix_error(tiny_codec, encoded, quality):
    img, _ = encoded
    with pytest.raises(AdapixError):
        tiny_codec.encode_ex(img, quality=quality)


@pytest.mark.parametrize("quality", [0, 100, 0.004, 12.345, 33.333, 50.005, 66.666, 99.995,
                                     99.999, 77])
def test_quality_stored_with_hundredth_precision(tiny_codec, quality):
    img = RasterImage(np.random.default_rng(3).integers(0, 256, (9, 14, 3), dtype=np.uint8))
    res = tiny_codec.encode_ex(img, quality=quality)
    expected = round(float(quality), 2)
    assert res.quality == expected
    header = container.peek_header(res.data)
    assert header.quality == expected
    assert round(header.quality * 100) == round(expected * 100)
    dec = tiny_codec.decode_ex(res.data)
    assert dec.header.quality == expected
    # the decoder uses exactly the quality the encoder used
    assert np.array_equal(dec.image.pixels, res.reconstruction.pixels)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_decodes_to_its_reconstruction(tiny_codec, profile):
    """Encoder-side optimisation changes what is sent, never how it decodes (short budget)."""
    img = RasterImage(np.random.default_rng(6).integers(0, 256, (24, 40, 3), dtype=np.uint8))
    res = tiny_codec.encode_ex(img, quality=55, profile=profile, time_budget=0.3)
    dec = tiny_codec.decode_ex(res.data)
    assert dec.header.profile == profile == res.profile
    assert np.array_equal(dec.image.pixels, res.reconstruction.pixels)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_bf16_files_decode_to_their_reconstruction(tiny_codec, encoded, profile):
    """--bf16: the header's flag makes the decoder run the synthesis in bfloat16 as the encoder
    did; the streams are those of a float32 file, the pixels move a little."""
    img, _ = encoded
    plain = tiny_codec.encode_ex(img, quality=55, profile=profile, time_budget=0.3)
    res = tiny_codec.encode_ex(img, quality=55, profile=profile, time_budget=0.3, bf16=True)
    dec = tiny_codec.decode_ex(res.data)
    assert res.bf16 and dec.header.bf16 and not plain.bf16
    assert container.peek_header(res.data).flags & container.FLAG_BF16
    assert np.array_equal(dec.image.pixels, res.reconstruction.pixels)
    if profile == "fast":  # same streams, other pixels, about the same PSNR
        a, b = container.unpack(plain.data), container.unpack(res.data)
        assert a.sections == b.sections
        assert not np.array_equal(res.reconstruction.pixels, plain.reconstruction.pixels)
        assert abs(res.psnr - plain.psnr) < 0.2


def test_bf16_tiles_decode_to_their_reconstruction(tiny_codec):
    img = RasterImage(np.random.default_rng(8).integers(0, 256, (70, 130, 3), dtype=np.uint8))
    res = tiny_codec.encode_ex(img, quality=60, tile_size=64, bf16=True)
    dec = tiny_codec.decode_ex(res.data)
    assert dec.header.tiled and dec.header.bf16
    assert np.array_equal(dec.image.pixels, res.reconstruction.pixels)


def test_bf16_warns_where_the_cpu_lacks_native_bf16(tiny_codec, encoded, monkeypatch):
    import adapix.codec as codec_mod

    img, _ = encoded
    monkeypatch.setattr(codec_mod, "bf16_is_fast", lambda: False)
    assert codec_mod.SLOW_BF16_WARNING in tiny_codec.encode_ex(img, bf16=True).warnings
    assert codec_mod.SLOW_BF16_WARNING not in tiny_codec.encode_ex(img).warnings
    with pytest.raises(AdapixError, match="bf16"):
        tiny_codec.encode_ex(img, bf16="yes")


def test_unknown_profile_raises_adapix_error(tiny_codec, encoded):
    img, _ = encoded
    with pytest.raises(AdapixError):
        tiny_codec.encode_ex(img, profile="no-such-profile")


def test_encode_result_measurements(tiny_codec, encoded):
    img, res = encoded
    assert (res.width, res.height) == (45, 37)
    assert res.bpp == 8 * len(res.data) / (45 * 37)
    assert res.est_bpp > 0
    f = container.unpack(res.data)
    coded = len(f.content) + len(f.hyper) + len(f.model_stream)
    est_bits = res.est_bpp * 45 * 37
    # the ideal code length is close to the real one (ANS flushes up to 64 bits per stream)
    assert abs(est_bits - 8 * coded) <= 0.15 * 8 * coded + 3 * 64
    assert res.psnr == pytest.approx(psnr_uint8(img.pixels, res.reconstruction.pixels))
    assert res.quality == 42.5 and res.profile == "fast"
    assert res.seconds >= 0
    assert res.reconstruction.pixels.shape == img.pixels.shape


def test_encode_inputs_path_bytes_pil(tiny_codec, tmp_path):
    arr = np.random.default_rng(4).integers(0, 256, (11, 13, 3), dtype=np.uint8)
    path = tmp_path / "in.png"
    Image.fromarray(arr).save(path)
    by_path = tiny_codec.encode(str(path), quality=30)
    assert tiny_codec.encode(path.read_bytes(), quality=30) == by_path
    assert tiny_codec.encode(Image.fromarray(arr), quality=30) == by_path
    assert tiny_codec.encode(RasterImage(arr), quality=30) == by_path
