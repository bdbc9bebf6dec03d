"""Fuzz test of the whole decoder: ``.apx`` bytes -> ``Codec.decode_ex`` / ``adapix.decode``.

Contract (docs/reliability.md): whatever the bytes, decoding either returns an image of the size
the header declares, or raises :class:`adapix.AdapixError` (FormatError, ModelMismatchError...)
with a non-empty one-line message. Any other exception fails the test; so does a case slower
than the hypothesis deadline (2 s).

Inputs: small valid files encoded here with the TINY test model (conftest), then mutated (bit
flips, byte replacements, insertions, deletions, truncation, appended garbage, u32 fields set
to extreme values), random data, and valid containers with damaged payloads or changed header
fields. Half the byte-level mutations get their CRC32 recomputed, so that they reach the header
and section parsers, the entropy decoders and the synthesis instead of the checksum.

Allocation: the fuzzing codec has a small pixel limit (:data:`LIMIT`), so every size a mutated
header declares is either refused before decoding or small; ``test_huge_sizes_...`` checks that
the default limit refuses huge declarations before the model allocates anything.

Reproducible in CI: ``derandomize=True`` (examples derived from the test name), no example
database. The long, coverage-guided run is ``scripts/fuzz_atheris.py``.
"""

from __future__ import annotations

import dataclasses
import inspect
import resource
import struct
import time
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import adapix
from adapix import container
from adapix.codec import Codec
from adapix.container import FORMAT_VERSION, MAGIC, ApxFile, SectionType
from adapix.errors import AdapixError, FormatError, ModelMismatchError
from adapix.images import RasterImage, to_pil
from adapix.weights import DEFAULT_WEIGHTS

LIMIT = 4 * 64 * 64  # pixels: the fuzzing codec decodes at most a 128x128 padded area


def fuzz_settings(n: int) -> settings:
    return settings(max_examples=n, deadline=2000, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def reseal(data: bytes) -> bytes:
    """Recomputes the CRC32 of a (mutated) file: its last 4 bytes."""
    return with_crc(data[:-4]) if len(data) >= 4 else data


def picture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth gradient with a sine texture and noise, uint8 (h, w, 3)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([40 + 170 * xx / max(w - 1, 1), 60 + 140 * yy / max(h - 1, 1),
                    128 + 80 * np.sin(xx / 6.0) * np.cos(yy / 9.0)], axis=-1)
    img += np.random.default_rng(seed).normal(0.0, 6.0, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def check_decode(decode, data: bytes, in_given: bool = True) -> str:
    """Runs ``decode(data)``; returns "decoded" or "rejected"; fails on anything else.
    ``in_given``: inside a hypothesis test (the outcome is recorded for its statistics)."""
    try:
        res = decode(data)
    except AdapixError as e:
        msg = str(e)
        assert msg and "\n" not in msg, f"{type(e).__name__} message is not one line: {msg!r}"
        if in_given:
            event(f"rejected: {type(e).__name__}")
        return "rejected"
    h = res.header
    img = res.image
    assert img.pixels.dtype == np.uint8
    assert img.pixels.shape == (h.height, h.width, 1 if h.color == 1 else 3)
    assert h.width * h.height <= LIMIT
    if h.alpha:
        assert img.alpha is not None and img.alpha.shape == (h.height, h.width)
    else:
        assert img.alpha is None
    to_pil(img)  # what Codec.decode returns
    if in_given:
        event("decoded")
    return "decoded"


# ---- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def codec(tiny_weights, one_thread) -> Codec:
    """The TINY test model with a small pixel limit."""
    return Codec(tiny_weights, max_pixels=LIMIT)


@pytest.fixture(scope="module")
def seeds(codec) -> dict[str, bytes]:
    """Valid files: RGB 32x48; grey with alpha and ICC; 1x1; tiled (when the codec tiles)."""
    grey = picture(24, 16, seed=1)[:, :, 1:2].copy()
    alpha = np.tile(np.arange(16, dtype=np.uint8) * 16, (24, 1))
    out = {
        "rgb": codec.encode(RasterImage(picture(32, 48)), quality=60),
        "grey-alpha-icc": codec.encode(RasterImage(grey, alpha=alpha, icc=b"fake icc"),
                                       quality=90),
        "1x1": codec.encode(RasterImage(picture(1, 1, seed=2)), quality=0),
    }
    if "tile_size" in inspect.signature(codec.encode_ex).parameters:  # 2x2 tiles of 64
        out["tiled"] = codec.encode_ex(RasterImage(picture(70, 100, seed=3)), quality=40,
                                       tile_size=64).data
    for data in out.values():
        assert check_decode(codec.decode_ex, data, False) == "decoded"  # warms the model up too
    return out


@pytest.fixture(scope="module")
def peak_rss():
    """Peak RSS growth (MiB) over the module's fuzz tests must stay small: no large allocation
    can hide behind a mutated header."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown < 512, f"peak RSS grew by {grown:.0f} MiB while fuzzing"


# ---- byte-level mutations ----------------------------------------------------------------------
INTERESTING_U32 = [0, 1, 63, 64, 65, 127, 128, 129, 4096, 16384, 16385, 65536, 2**24, 2**30,
                   2**30 + 1, 2**31, 2**32 - 1]


def mutate(data: st.DataObject, raw: bytes) -> bytes:
    """1..6 random byte-level mutations of ``raw``, then the CRC recomputed or not."""
    b = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 6), label="mutations")):
        op = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "append",
                                        "u32"]))
        i = data.draw(st.integers(0, max(len(b) - 1, 0)))
        if op == "flip" and b:
            b[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set" and b:
            b[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            b[i:i] = data.draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del b[i:i + data.draw(st.integers(1, 16))]
        elif op == "truncate":
            del b[i:]
        elif op == "append":
            b += data.draw(st.binary(min_size=1, max_size=64))
        elif op == "u32" and len(b) >= 4:  # width (5), height (9), or anywhere (section lengths)
            j = data.draw(st.sampled_from([5, 9, min(i, len(b) - 4)]))
            v = data.draw(st.sampled_from(INTERESTING_U32) | st.integers(0, 2**32 - 1))
            b[j:j + 4] = struct.pack(">I", v)
    out = bytes(b)
    return reseal(out) if data.draw(st.booleans(), label="reseal") else out


@fuzz_settings(600)
@given(data=st.data())
def test_fuzz_mutated_files(codec, seeds, peak_rss, data):
    raw = seeds[data.draw(st.sampled_from(sorted(seeds)), label="seed")]
    check_decode(codec.decode_ex, mutate(data, raw))


@fuzz_settings(200)
@given(payload=st.binary(max_size=600), prefix=st.booleans(), seal=st.booleans())
def test_fuzz_random_data(codec, peak_rss, payload, prefix, seal):
    data = (MAGIC + bytes([FORMAT_VERSION]) + payload) if prefix else payload
    assert check_decode(codec.decode_ex, with_crc(data) if seal else data) == "rejected"


# ---- valid containers with damaged contents ----------------------------------------------------
def damage(data: st.DataObject, payload: bytes) -> bytes:
    how = data.draw(st.sampled_from(["mutate", "random", "truncate", "extend", "empty"]))
    if how == "mutate" and payload:
        b = bytearray(payload)
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(b) - 1))
            b[i] = data.draw(st.integers(0, 255))
        return bytes(b)
    if how == "random":
        return data.draw(st.binary(max_size=max(2 * len(payload), 8)))
    if how == "truncate":
        return payload[:data.draw(st.integers(0, len(payload)))]
    if how == "extend":
        return payload + data.draw(st.binary(min_size=1, max_size=32))
    return b""


@fuzz_settings(400)
@given(data=st.data())
def test_fuzz_valid_container_damaged_contents(codec, seeds, peak_rss, data):
    """Damage behind a correct structure and CRC: reaches the entropy decoders, the tile index,
    the alpha PNG and the synthesis with any declared size, quality and flags."""
    f = container.unpack(seeds[data.draw(st.sampled_from(sorted(seeds)), label="seed")])
    sections = dict(f.sections)
    for kind in data.draw(st.sets(st.sampled_from(sorted(sections)), max_size=3)):
        sections[kind] = damage(data, sections[kind])
    if data.draw(st.booleans()):
        sections.pop(data.draw(st.sampled_from(sorted(sections))), None)
    h = f.header
    changes = data.draw(st.fixed_dictionaries({}, optional={
        "width": st.integers(1, 160), "height": st.integers(1, 160),
        "quality": st.integers(0, 10000).map(lambda q: q / 100),
        "color": st.sampled_from([1, 3]), "postfilter": st.booleans(),
        "profile": st.sampled_from(sorted(container.PROFILES.values())),
        "tile_size": st.sampled_from([64, 128, 192]),
    }))
    if "tile_size" in changes and not h.tiled:
        del changes["tile_size"]
    h = dataclasses.replace(h, **changes)
    h = dataclasses.replace(h, alpha=SectionType.ALPHA in sections,
                            icc=SectionType.ICC in sections)
    check_decode(codec.decode_ex, container.pack(ApxFile(h, sections)))


@fuzz_settings(300)
@given(data=st.data())
def test_fuzz_header_fields_with_valid_crc(codec, seeds, peak_rss, data):
    """Every header byte (magic .. section count) set to any value, CRC recomputed."""
    raw = bytearray(seeds[data.draw(st.sampled_from(sorted(seeds)), label="seed")])
    idlen = raw[21]
    header_end = 22 + idlen + 8 + 1
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, header_end - 1))
        raw[i] = data.draw(st.integers(0, 255))
    check_decode(codec.decode_ex, reseal(bytes(raw)))


# ---- sizes and allocation ----------------------------------------------------------------------
def _resized(data: bytes, width: int, height: int) -> bytes:
    f = container.unpack(data)
    h = dataclasses.replace(f.header, width=width, height=height)
    return container.pack(ApxFile(h, f.sections))


@pytest.mark.parametrize("width,height", [
    (2**30, 2**30),          # refused by the container: w * h above the limit
    (16_001, 16_000),
    (1, 200_000_000),        # w * h below the limit, but decoded as 64 x 200M: refused by the codec
    (5_000_000, 1),
])
def test_huge_sizes_refused_before_allocation(tiny_codec, seeds, monkeypatch, width, height):
    """With the default limit (256 MP), a tiny file declaring a huge image is refused by the
    header checks, before the model decodes (and allocates) anything."""
    assert tiny_codec.max_pixels == container.DEFAULT_MAX_PIXELS

    def must_not_run(*a, **k):
        raise AssertionError("the model started decoding a huge image")

    monkeypatch.setattr(tiny_codec.model, "decompress", must_not_run)
    data = _resized(seeds["rgb"], width, height)
    t = time.perf_counter()
    with pytest.raises(FormatError, match="--max-pixels"):
        tiny_codec.decode_ex(data)
    assert time.perf_counter() - t < 1.0


def test_padded_area_counts_against_the_limit(codec, seeds):
    """Regression (found by scripts/fuzz_atheris.py): the limit used to bound width * height
    only, while the decoder works on both sides rounded up to 64, so a 1 x N header cost
    64 x N pixels of work and memory (a 300-byte file held the decoder 11 s and 2 GB)."""
    assert check_decode(codec.decode_ex, _resized(seeds["rgb"], 128, 128), False) == "decoded"
    for w, h in ((1, LIMIT), (LIMIT, 1), (65, 129)):
        assert w * h <= LIMIT
        with pytest.raises(FormatError, match="rounded up"):
            codec.decode_ex(_resized(seeds["rgb"], w, h))


# ---- the public API with the shipped model -----------------------------------------------------
@pytest.fixture(scope="module")
def shipped_file(one_thread):
    """A 32x48 file of the shipped model; ``adapix.decode``'s codec gets the small limit."""
    if not DEFAULT_WEIGHTS.exists():
        pytest.skip("shipped weights not present")
    from adapix.codec import default_codec

    shipped = default_codec()
    before, shipped.max_pixels = shipped.max_pixels, LIMIT
    yield adapix.encode(RasterImage(picture(32, 48, seed=4)), quality=50)
    shipped.max_pixels = before


@fuzz_settings(60)
@given(data=st.data())
def test_fuzz_public_decode_shipped_model(shipped_file, data):
    """``adapix.decode`` (shipped model, default limit) on mutated files of its own."""
    mutated = mutate(data, shipped_file)
    try:
        img = adapix.decode(mutated)
    except AdapixError as e:
        assert str(e) and "\n" not in str(e)
        event(f"rejected: {type(e).__name__}")
    else:
        event("decoded")
        h = container.peek_header(mutated)
        assert img.size == (h.width, h.height)


def test_public_decode_of_a_foreign_model_file(seeds):
    if not DEFAULT_WEIGHTS.exists():
        pytest.skip("shipped weights not present")
    with pytest.raises(ModelMismatchError):
        adapix.decode(seeds["rgb"])
