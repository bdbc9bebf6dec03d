"""Tests of the ``.apx`` container format (adapix.container)."""

from __future__ import annotations

import dataclasses
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapix.container import (
    DEFAULT_MAX_PIXELS,
    FORMAT_VERSION,
    MAGIC,
    MIN_LENGTH,
    ApxFile,
    Header,
    SectionType,
    describe,
    pack,
    peek_header,
    unpack,
)
from adapix.errors import AdapixError, FormatError

HEADER = Header(
    width=640, height=480, color=3, quality=37.25, profile="balanced", postfilter=True,
    alpha=True, icc=True, tiled=True, tile_size=256, model_id="apx-base_v1.2",
    weights_hash=bytes(range(8)),
)
ALL_SECTIONS = {
    SectionType.MODEL_STREAM: b"model-stream" * 3,
    SectionType.HYPER: b"\x00\x01\x02hyper",
    SectionType.CONTENT: bytes(range(256)) * 2,
    SectionType.ALPHA: b"alpha",
    SectionType.ICC: b"icc-profile",
    SectionType.TILE_INDEX: b"",
}
SMALL = Header(
    width=3, height=2, color=1, quality=0.0, profile="fast", postfilter=False, alpha=False,
    icc=False, tiled=False, tile_size=0, model_id="m", weights_hash=b"\xff" * 8,
)


def with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


@pytest.fixture(scope="module")
def full() -> bytes:
    return pack(ApxFile(HEADER, dict(ALL_SECTIONS)))


@pytest.fixture(scope="module")
def small() -> bytes:
    return pack(ApxFile(SMALL, {SectionType.CONTENT: b"xyz"}))


def test_round_trip_all_sections(full: bytes) -> None:
    f = unpack(full)
    assert f.header == HEADER
    assert f.sections == ALL_SECTIONS
    assert f.model_stream == ALL_SECTIONS[SectionType.MODEL_STREAM]
    assert f.tile_index == b"" and f.alpha == b"alpha" and f.icc == b"icc-profile"
    assert pack(f) == full
    assert peek_header(full) == HEADER
    assert full.startswith(MAGIC + bytes([FORMAT_VERSION]))
    assert unpack(bytearray(full)) == f and unpack(memoryview(full)) == f


def test_round_trip_minimal(small: bytes) -> None:
    f = unpack(small)
    assert f.header == SMALL and f.hyper is None and f.content == b"xyz"
    assert len(pack(ApxFile(SMALL))) == MIN_LENGTH
    assert unpack(pack(ApxFile(SMALL))).sections == {}


@pytest.mark.parametrize("q", [0, 0.01, 12.34, 99.99, 100])
def test_quality_steps(q: float) -> None:
    h = dataclasses.replace(SMALL, quality=q)
    assert unpack(pack(ApxFile(h))).header.quality == pytest.approx(q, abs=1e-9)


@pytest.mark.parametrize("changes", [
    {"width": 0}, {"height": 0}, {"width": 2**30 + 1}, {"width": -1}, {"width": 2.0},
    {"color": 2}, {"color": 4}, {"color": 0}, {"color": 3.0},
    {"quality": 100.5}, {"quality": -0.5}, {"quality": float("nan")}, {"quality": float("inf")},
    {"quality": "50"}, {"profile": "ultra"}, {"profile": 1},
    {"tiled": True, "tile_size": 0}, {"tiled": True, "tile_size": 100},
    {"tiled": True, "tile_size": 65536}, {"tiled": False, "tile_size": 64},
    {"model_id": ""}, {"model_id": "Apx"}, {"model_id": "a" * 65}, {"model_id": "a b"},
    {"model_id": "é"}, {"model_id": "a\n"}, {"model_id": b"abc"},
    {"weights_hash": b"1234567"}, {"weights_hash": b"123456789"}, {"weights_hash": "12345678"},
    {"alpha": True}, {"icc": True},  # flag set but section missing
])
def test_pack_range_checks(changes: dict) -> None:
    with pytest.raises(FormatError):
        pack(ApxFile(dataclasses.replace(SMALL, **changes)))


def test_pack_accepts_limits() -> None:
    h = dataclasses.replace(SMALL, width=2**30, height=1, quality=100, model_id="a" * 64,
                            profile="custom", tiled=True, tile_size=65472)
    assert unpack(pack(ApxFile(h)), max_pixels=2**30).header == h


@pytest.mark.parametrize("sections", [
    {SectionType.ALPHA: b"a"}, {SectionType.ICC: b"i"}, {7: b"x"}, {0: b""}, {"CONTENT": b""},
    {3.0: b""}, {True: b""},
    {SectionType.CONTENT: "text"},
])
def test_pack_section_checks(sections: dict) -> None:
    with pytest.raises(FormatError):
        pack(ApxFile(SMALL, sections))


def test_formaterror_is_adapix_error() -> None:
    assert issubclass(FormatError, AdapixError)


def test_wrong_magic(small: bytes) -> None:
    for bad in (b"PNG\x89" + small[4:], b"\x89PNG\r\n\x1a\n" + bytes(40), b"x", b""):
        with pytest.raises(FormatError, match="not an Adapix file"):
            unpack(bad)


def test_newer_version(small: bytes) -> None:
    data = with_crc(small[:4] + b"\x02" + small[5:-4])
    with pytest.raises(FormatError, match="newer adapix") as e:
        unpack(data)
    assert "2" in str(e.value) and "1" in str(e.value)
    with pytest.raises(FormatError):
        unpack(with_crc(small[:4] + b"\x00" + small[5:-4]))


def test_every_truncation(full: bytes, small: bytes) -> None:
    for data in (full, small):
        for n in range(len(data)):
            with pytest.raises(FormatError):
                unpack(data[:n])


def test_truncation_message(full: bytes) -> None:
    with pytest.raises(FormatError, match="truncated"):
        unpack(full[: len(full) // 2])
    with pytest.raises(FormatError, match="truncated"):
        unpack(full[:20])


def test_every_bit_flip(small: bytes) -> None:
    original = unpack(small)
    for i in range(len(small)):
        for bit in range(8):
            data = bytearray(small)
            data[i] ^= 1 << bit
            try:
                f = unpack(bytes(data))
            except FormatError as e:
                assert "\n" not in str(e)
            else:  # never happens with a CRC, but a harmless flip would have to decode identically
                assert f == original


def test_corrupted_message(full: bytes) -> None:
    data = bytearray(full)
    data[len(data) // 2] ^= 0x10
    with pytest.raises(FormatError, match=r"corrupted \(checksum mismatch\)"):
        unpack(bytes(data))


@pytest.mark.parametrize("extra", [b"\x00", b"garbage", bytes(100)])
def test_trailing_garbage(full: bytes, extra: bytes) -> None:
    with pytest.raises(FormatError, match="trailing"):
        unpack(full + extra)


def test_max_pixels(full: bytes) -> None:
    assert unpack(full, max_pixels=640 * 480).header.width == 640
    with pytest.raises(FormatError, match="--max-pixels"):
        unpack(full, max_pixels=640 * 480 - 1)
    big = dataclasses.replace(SMALL, width=2**30, height=2**30)
    data = pack(ApxFile(big))
    with pytest.raises(FormatError, match="--max-pixels"):
        unpack(data)
    assert DEFAULT_MAX_PIXELS == 256_000_000


def _body(small: bytes) -> bytes:
    """``small`` without its CRC."""
    return small[:-4]


def test_crc_valid_structural_errors(small: bytes) -> None:
    body = _body(small)
    fixed = 22  # magic .. model id length
    hdr_end = fixed + 1 + 8  # count byte offset
    cases = {
        "flags": body[:17] + b"\x00\x20" + body[19:],
        "profile": body[:16] + b"\x07" + body[17:],
        "color": body[:13] + b"\x02" + body[14:],
        "quality": body[:14] + b"\x27\x11" + body[16:],
        "width": body[:5] + bytes(4) + body[9:],
        "model id": body[:fixed] + b"M" + body[fixed + 1 :],
        "id length": body[: fixed - 1] + b"\x00" + body[fixed:],
        "unknown section": body[: hdr_end + 1] + b"\x09" + body[hdr_end + 2 :],
        "section length": body[: hdr_end + 2] + struct.pack(">I", 4) + body[hdr_end + 6 :],
        "count": body[:hdr_end] + b"\x11" + body[hdr_end + 1 :],
        "duplicate": body[:hdr_end] + b"\x02" + body[hdr_end + 1 :] + body[hdr_end + 1 :],
        "alpha flag": body[:17] + b"\x00\x02" + body[19:],
        "alpha section": body[:hdr_end] + b"\x02" + body[hdr_end + 1 :] + b"\x04" + bytes(4),
        "tile": body[:19] + b"\x00\x40" + body[21:],
        "gap": body + b"\x00",
    }
    for name, data in cases.items():
        with pytest.raises(FormatError):
            unpack(with_crc(data))
            pytest.fail(name)


def test_bf16_flag_round_trips_as_bit_4(small: bytes) -> None:
    data = pack(ApxFile(dataclasses.replace(SMALL, bf16=True), {SectionType.CONTENT: b"xyz"}))
    f = unpack(data)
    assert f.header.bf16 and not unpack(small).header.bf16
    assert f.header.flags == SMALL.flags | 16
    assert data[17:19] == (SMALL.flags | 16).to_bytes(2, "big")
    assert dict(describe(f, len(data)))["flags"].endswith("bf16 synthesis")


def test_describe(full: bytes) -> None:
    rows = dict(describe(unpack(full), len(full)))
    assert rows["size"].startswith("640 x 480")
    assert rows["model id"] == "apx-base_v1.2"
    assert rows["weights hash"] == "0001020304050607"
    assert rows["flags"] == "postfilter, alpha, icc, tiled"
    assert rows["section content"].startswith("512 B")
    assert rows["total"] == f"{len(full):,} B"
    assert float(rows["bits per pixel"]) == pytest.approx(8 * len(full) / (640 * 480), abs=1e-4)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in describe(unpack(full), 0))


def test_unpack_rejects_non_bytes() -> None:
    for bad in (None, 123, "\x89APX", [1, 2]):
        with pytest.raises(FormatError):
            unpack(bad)  # type: ignore[arg-type]


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


def _only_format_error(data: bytes) -> None:
    try:
        unpack(data)
    except FormatError as e:
        assert str(e) and "\n" not in str(e)


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data: bytes) -> None:
    _only_format_error(data)
    _only_format_error(MAGIC + bytes([FORMAT_VERSION]) + data)
    _only_format_error(with_crc(MAGIC + bytes([FORMAT_VERSION]) + data))


@st.composite
def mutations(draw: st.DrawFn) -> bytes:
    base = draw(st.sampled_from(["full", "small"]))
    data = bytearray(pack(ApxFile(HEADER, dict(ALL_SECTIONS))) if base == "full"
                     else pack(ApxFile(SMALL, {SectionType.CONTENT: b"xyz"})))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "set" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 8))]
        else:
            del data[i:]
    if draw(st.booleans()) and len(data) >= 4:  # re-seal so that field parsing is exercised
        data = bytearray(with_crc(bytes(data[:-4])))
    return bytes(data)


@FUZZ
@given(mutations())
def test_fuzz_mutations(data: bytes) -> None:
    _only_format_error(data)
