"""The ``.apx`` container format, version 1.

A fixed header, typed sections and a CRC32. Integers are unsigned and big-endian.

======  ============  ==========================================================
bytes   field         meaning
======  ============  ==========================================================
4       magic         ``b"\\x89APX"``
1       version       format version, 1
4       width         pixels, 1..2**30
4       height        pixels, 1..2**30
1       color         1 = greyscale, 3 = RGB
2       quality       round(quality * 100), 0..10000 (quality 0..100, 0.01 steps)
1       profile       0 fast, 1 balanced, 2 best, 255 custom
2       flags         bit0 POSTFILTER, bit1 ALPHA, bit2 ICC, bit3 TILED, bit4 BF16; rest 0
2       tile_size     0 unless TILED; then the tile side, a multiple of 64
1       id length     n, 1..64
n       model_id      ASCII ``[a-z0-9._-]``
8       weights_hash  raw bytes
1       count         number of sections, 0..16
\\*      sections      each: type u8 (:class:`SectionType`), length u32, payload
4       crc32         ``zlib.crc32`` of every byte before it; nothing may follow
======  ============  ==========================================================

Each section type appears at most once; ALPHA is present iff the ALPHA flag is set, ICC iff the
ICC flag is. BF16: the encoder reconstructed with the synthesis transform in bfloat16
(:meth:`adapix.model.AdapixModel.synthesize`), so the decoder does too; the streams do not depend
on it (the entropy coding is fixed point). :func:`unpack` checks magic, version, minimum length,
CRC, then every field, and raises nothing but :class:`~adapix.errors.FormatError`; :func:`pack`
applies the same checks.

Tiled files (TILED flag, see :mod:`adapix.tiling`): the image is a row-major grid of
``ceil(height / tile_size) * ceil(width / tile_size)`` independently coded tiles. MODEL_STREAM,
HYPER and CONTENT hold the tiles' streams one after the other, and the TILE_INDEX section says
where each tile's streams are:

======  ============  ==========================================================
4       count         number of tiles; must equal the header's grid
12 * n  lengths       per tile, in order: model stream, hyper, content lengths (u32 each)
======  ============  ==========================================================

A tile's streams start where the previous tile's end; the lengths of each kind must add up to
its section's length exactly. :func:`tile_sections` builds these sections and
:func:`tile_streams` checks and splits them (FormatError on any mismatch). The container layer
itself (:func:`pack` / :func:`unpack`) checks only the structure; the codec calls
:func:`tile_streams` before it allocates the output image.
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Union

from adapix.errors import FormatError

MAGIC = b"\x89APX"
FORMAT_VERSION = 1
DEFAULT_MAX_PIXELS = 256_000_000
MAX_SIDE = 2**30
MAX_SECTIONS = 16
PROFILES: dict[int, str] = {0: "fast", 1: "balanced", 2: "best", 255: "custom"}
_PROFILE_IDS = {name: pid for pid, name in PROFILES.items()}
FLAG_POSTFILTER, FLAG_ALPHA, FLAG_ICC, FLAG_TILED, FLAG_BF16 = 1, 2, 4, 8, 16
_FLAGS_KNOWN = 0x1F
_MODEL_ID = re.compile(r"[a-z0-9._-]{1,64}")
_FIXED = struct.Struct(">4sBIIBHBHHB")  # magic .. model id length: 22 bytes
_SECTION = struct.Struct(">BI")
_TILE_COUNT = struct.Struct(">I")
_TILE_ENTRY = struct.Struct(">III")  # model stream, hyper, content lengths of one tile
_CRC = struct.Struct(">I")
MIN_LENGTH = _FIXED.size + 1 + 8 + 1 + _CRC.size  # shortest possible file: 36 bytes
Bytes = Union[bytes, bytearray, memoryview]


class SectionType(IntEnum):
    """Type byte of a section."""
    MODEL_STREAM = 1
    HYPER = 2
    CONTENT = 3
    ALPHA = 4
    ICC = 5
    TILE_INDEX = 6


_TYPES = frozenset(SectionType)


@dataclass(frozen=True)
class Header:
    """Decoded header of an ``.apx`` file (flags as booleans, quality as a float)."""
    width: int
    height: int
    color: int
    quality: float
    profile: str
    postfilter: bool
    alpha: bool
    icc: bool
    tiled: bool
    tile_size: int
    model_id: str
    weights_hash: bytes
    bf16: bool = False  # the synthesis runs in bfloat16 (FLAG_BF16)

    @property
    def flags(self) -> int:
        """The flags as the u16 bit field."""
        bits = (self.postfilter, self.alpha, self.icc, self.tiled, self.bf16)
        return sum(1 << i for i, on in enumerate(bits) if on)

    @property
    def pixels(self) -> int:
        """Number of pixels, width * height."""
        return self.width * self.height


def _section_property(kind: SectionType) -> property:
    return property(lambda self: self.sections.get(kind), doc=f"The {kind.name} payload, or None.")


@dataclass
class ApxFile:
    """A header plus its section payloads, keyed by type."""
    header: Header
    sections: dict[SectionType, bytes] = field(default_factory=dict)

    model_stream = _section_property(SectionType.MODEL_STREAM)
    hyper = _section_property(SectionType.HYPER)
    content = _section_property(SectionType.CONTENT)
    alpha = _section_property(SectionType.ALPHA)
    icc = _section_property(SectionType.ICC)
    tile_index = _section_property(SectionType.TILE_INDEX)


def _check_int(name: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise FormatError(f"{name} {value!r} out of range {lo}..{hi}")


def _validate(h: Header) -> tuple[int, int, bytes]:
    """Check every header field; return (quality u16, profile id, model id bytes)."""
    _check_int("width", h.width, 1, MAX_SIDE)
    _check_int("height", h.height, 1, MAX_SIDE)
    if isinstance(h.color, bool) or not isinstance(h.color, int) or h.color not in (1, 3):
        raise FormatError(f"color {h.color!r} is neither 1 (greyscale) nor 3 (RGB)")
    q = h.quality
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not math.isfinite(q):
        raise FormatError(f"quality {q!r} is not a number")
    if not 0 <= q <= 100:
        raise FormatError(f"quality {q!r} out of range 0..100")
    if h.profile not in _PROFILE_IDS:
        raise FormatError(f"unknown profile {h.profile!r} (known: {', '.join(_PROFILE_IDS)})")
    _check_int("tile size", h.tile_size, 0, 0xFFFF)
    if h.tiled and (h.tile_size == 0 or h.tile_size % 64):
        raise FormatError(f"tile size {h.tile_size} is not a positive multiple of 64")
    if not h.tiled and h.tile_size:
        raise FormatError(f"tile size {h.tile_size} set but the TILED flag is not")
    if not isinstance(h.model_id, str) or not _MODEL_ID.fullmatch(h.model_id):
        raise FormatError(f"model id {h.model_id!r} is not 1..64 characters of [a-z0-9._-]")
    if not isinstance(h.weights_hash, bytes) or len(h.weights_hash) != 8:
        raise FormatError(f"weights hash {h.weights_hash!r} is not 8 bytes")
    return round(q * 100), _PROFILE_IDS[h.profile], h.model_id.encode("ascii")


def _check_sections(h: Header, sections: dict) -> list[tuple[SectionType, bytes]]:
    """Check section types, sizes and agreement with the flags; return them sorted by type."""
    if len(sections) > MAX_SECTIONS:
        raise FormatError(f"{len(sections)} sections, at most {MAX_SECTIONS} allowed")
    out = []
    for kind, payload in sections.items():
        if isinstance(kind, bool) or not isinstance(kind, int) or kind not in _TYPES:
            raise FormatError(f"unknown section type {kind!r}")
        if not isinstance(payload, (bytes, bytearray, memoryview)) or len(payload) > 0xFFFFFFFF:
            raise FormatError(f"section {SectionType(kind).name} is not bytes of at most 4 GiB")
        out.append((SectionType(kind), bytes(payload)))
    for kind, flag in ((SectionType.ALPHA, h.alpha), (SectionType.ICC, h.icc)):
        if (kind in sections) != bool(flag):
            state = "set but no" if flag else "not set but a"
            raise FormatError(f"{kind.name} flag {state} {kind.name} section")
    return sorted(out)


def pack(f: ApxFile) -> bytes:
    """Serialise ``f``; raises FormatError if any field is out of range."""
    h = f.header
    q, pid, mid = _validate(h)
    secs = _check_sections(h, f.sections)
    parts = [_FIXED.pack(MAGIC, FORMAT_VERSION, h.width, h.height, h.color, q, pid, h.flags,
                         h.tile_size, len(mid)), mid, h.weights_hash, bytes([len(secs)])]
    for kind, payload in secs:
        parts += [_SECTION.pack(kind, len(payload)), payload]
    body = b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


def _declared_length(mv: memoryview) -> int:
    """Length the structure claims (a lower bound > len(mv) when it runs off the end)."""
    n = len(mv)
    pos = _FIXED.size + mv[_FIXED.size - 1] + 8
    if pos >= n:
        return pos + 1 + _CRC.size
    count, pos = mv[pos], pos + 1
    for _ in range(min(count, MAX_SECTIONS)):
        if pos + _SECTION.size > n:
            return pos + _SECTION.size + _CRC.size
        pos += _SECTION.size + _SECTION.unpack_from(mv, pos)[1]
    return pos + _CRC.size


def _crc_ok(mv: memoryview, end: int) -> bool:
    return _CRC.unpack_from(mv, end - 4)[0] == zlib.crc32(mv[: end - 4])


def _unpack(mv: memoryview, max_pixels: int) -> ApxFile:
    n = len(mv)
    if n == 0 or bytes(mv[:4]) != MAGIC[: min(n, 4)]:
        raise FormatError("not an Adapix file")
    if n < 5:
        raise FormatError(f"truncated ({n} bytes)")
    if mv[4] > FORMAT_VERSION:
        raise FormatError(f"file needs a newer adapix (it has format version {mv[4]}, "
                          f"this adapix reads version {FORMAT_VERSION})")
    if mv[4] != FORMAT_VERSION:
        raise FormatError(f"unsupported format version {mv[4]}")
    if n < MIN_LENGTH:
        raise FormatError(f"truncated ({n} bytes, at least {MIN_LENGTH} needed)")
    end = n - _CRC.size
    if not _crc_ok(mv, n):
        need = _declared_length(mv)
        if MIN_LENGTH <= need < n and _crc_ok(mv, need):
            raise FormatError(f"{n - need} unexpected trailing bytes after the end of the stream")
        hint = f"; {n} bytes, at least {need} declared: probably truncated" if need > n else ""
        raise FormatError(f"corrupted (checksum mismatch{hint})")
    _, _, w, h, color, q, pid, flags, tile, idlen = _FIXED.unpack_from(mv, 0)
    _check_int("width", w, 1, MAX_SIDE)
    _check_int("height", h, 1, MAX_SIDE)
    if w * h > max_pixels:
        raise FormatError(f"image is {w}x{h} = {w * h} pixels, above the limit of {max_pixels} "
                          "(raise it with --max-pixels if you trust this file)")
    if pid not in PROFILES:
        raise FormatError(f"unknown profile id {pid}")
    if flags & ~_FLAGS_KNOWN:
        raise FormatError(f"unknown flag bits set: {flags & ~_FLAGS_KNOWN:#06x}")
    pos = _FIXED.size
    if pos + idlen + 8 + 1 > end:
        raise FormatError("truncated header")
    raw_id = bytes(mv[pos : pos + idlen])
    if not re.fullmatch(rb"[a-z0-9._-]+", raw_id):
        raise FormatError(f"model id {raw_id!r} is not 1..64 characters of [a-z0-9._-]")
    pos += idlen
    whash = bytes(mv[pos : pos + 8])
    count, pos = mv[pos + 8], pos + 9
    _check_int("section count", count, 0, MAX_SECTIONS)
    header = Header(w, h, color, q / 100, PROFILES[pid], bool(flags & FLAG_POSTFILTER),
                    bool(flags & FLAG_ALPHA), bool(flags & FLAG_ICC), bool(flags & FLAG_TILED),
                    tile, raw_id.decode("ascii"), whash, bf16=bool(flags & FLAG_BF16))
    _validate(header)
    sections: dict[SectionType, bytes] = {}
    for i in range(count):
        if pos + _SECTION.size > end:
            raise FormatError(f"truncated (section {i + 1} of {count} missing)")
        t, length = _SECTION.unpack_from(mv, pos)
        pos += _SECTION.size
        if t not in _TYPES:
            raise FormatError(f"unknown section type {t}")
        kind = SectionType(t)
        if kind in sections:
            raise FormatError(f"duplicate {kind.name} section")
        if length > end - pos:
            raise FormatError(f"truncated ({kind.name} section declares {length} bytes, "
                              f"{end - pos} remain)")
        sections[kind] = bytes(mv[pos : pos + length])
        pos += length
    if pos != end:
        raise FormatError(f"{end - pos} unexpected bytes between the last section and the checksum")
    _check_sections(header, sections)
    return ApxFile(header, sections)


def unpack(data: Bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ApxFile:
    """Parse and validate an ``.apx`` stream; raises only FormatError."""
    try:
        mv = memoryview(data).cast("B")
    except (TypeError, ValueError):
        raise FormatError(f"expected bytes, got {type(data).__name__}") from None
    try:
        return _unpack(mv, max_pixels)
    except FormatError:
        raise
    except Exception as e:  # safety net: struct.error, IndexError, ... never escape
        raise FormatError(f"malformed stream ({type(e).__name__})") from None


def peek_header(data: Bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Header:
    """The header of a valid stream (the whole stream is checked)."""
    return unpack(data, max_pixels).header


# ---- tiled files -------------------------------------------------------------------------------

TileStreams = tuple[bytes, bytes, bytes]  # (model stream, hyper, content) of one tile

_TILED_KINDS = (SectionType.MODEL_STREAM, SectionType.HYPER, SectionType.CONTENT)


def tile_sections(tiles: list[TileStreams]) -> dict[SectionType, bytes]:
    """The MODEL_STREAM, HYPER, CONTENT and TILE_INDEX sections of a tiled file, from the
    (model stream, hyper, content) of every tile in row-major order."""
    index = [_TILE_COUNT.pack(len(tiles))]
    index += [_TILE_ENTRY.pack(*map(len, t)) for t in tiles]
    out = {kind: b"".join(t[i] for t in tiles) for i, kind in enumerate(_TILED_KINDS)}
    out[SectionType.TILE_INDEX] = b"".join(index)
    return out


def tile_count(h: Header) -> int:
    """Number of tiles of a tiled header's grid (0 for an untiled header)."""
    if not h.tiled or h.tile_size <= 0:
        return 0
    return -(-h.height // h.tile_size) * -(-h.width // h.tile_size)


def tile_streams(f: ApxFile) -> list[TileStreams]:
    """The (model stream, hyper, content) of every tile of a tiled file, in row-major order.

    Checks, before anything proportional to the image is allocated, that the TILED flag is set,
    the TILE_INDEX section exists, its length is that of the count it declares, the count is the
    header's grid, and the lengths of each kind add up to its section's length exactly; raises
    :class:`FormatError` otherwise."""
    h = f.header
    if not h.tiled:
        raise FormatError("file is not tiled")
    index = f.sections.get(SectionType.TILE_INDEX)
    if index is None:
        raise FormatError("tiled file lacks its TILE_INDEX section")
    expected = tile_count(h)
    if len(index) < _TILE_COUNT.size:
        raise FormatError(f"tile index of {len(index)} bytes is too short")
    (count,) = _TILE_COUNT.unpack_from(index, 0)
    if count != expected:
        raise FormatError(f"tile index lists {count} tiles, the {h.width}x{h.height} image in "
                          f"tiles of {h.tile_size} has {expected}")
    if len(index) != _TILE_COUNT.size + count * _TILE_ENTRY.size:
        raise FormatError(f"tile index is {len(index)} bytes, {count} tiles need "
                          f"{_TILE_COUNT.size + count * _TILE_ENTRY.size}")
    payloads = []
    for kind in _TILED_KINDS:
        p = f.sections.get(kind)
        if p is None:
            raise FormatError(f"tiled file lacks its {kind.name} section")
        payloads.append(memoryview(p))
    lengths = list(_TILE_ENTRY.iter_unpack(memoryview(index)[_TILE_COUNT.size:]))
    for i, kind in enumerate(_TILED_KINDS):
        total = sum(entry[i] for entry in lengths)
        if total != len(payloads[i]):
            raise FormatError(f"tile index: the tiles' {kind.name} streams add up to {total} "
                              f"bytes, the section has {len(payloads[i])}")
    out: list[TileStreams] = []
    pos = [0, 0, 0]
    for entry in lengths:
        parts = []
        for i in range(3):
            parts.append(bytes(payloads[i][pos[i]: pos[i] + entry[i]]))
            pos[i] += entry[i]
        out.append((parts[0], parts[1], parts[2]))
    return out


def describe(f: ApxFile, data_len: int) -> list[tuple[str, str]]:
    """(label, value) rows for ``adapix info``; ``data_len`` is the file size in bytes."""
    h = f.header
    on = [n for n, b in (("postfilter", h.postfilter), ("alpha", h.alpha), ("icc", h.icc),
                         ("tiled", h.tiled), ("bf16 synthesis", h.bf16)) if b]

    def share(size: int) -> str:
        return f"{size:,} B ({100 * size / data_len:.1f} %)" if data_len > 0 else f"{size:,} B"

    rows = [
        ("format", f"\\x89APX, version {FORMAT_VERSION}"),
        ("size", f"{h.width} x {h.height} ({h.pixels:,} pixels)"),
        ("color", "RGB" if h.color == 3 else "greyscale"),
        ("quality", f"{h.quality:.2f}"),
        ("profile", h.profile),
        ("flags", ", ".join(on) or "none"),
        ("tile size", f"{h.tile_size} px" if h.tiled else "not tiled"),
        *([("tiles", f"{-(-h.width // h.tile_size)} x {-(-h.height // h.tile_size)} = "
                     f"{tile_count(h)} (columns x rows), coded independently")]
          if h.tiled and h.tile_size else []),
        ("model id", h.model_id),
        ("weights hash", h.weights_hash.hex()),
    ]
    for kind in sorted(f.sections):
        rows.append((f"section {kind.name.lower()}", share(len(f.sections[kind]))))
    rows.append(("container overhead", share(data_len - sum(map(len, f.sections.values())))))
    rows.append(("total", f"{data_len:,} B"))
    rows.append(("bits per pixel", f"{8 * data_len / h.pixels:.4f}"))
    return rows
