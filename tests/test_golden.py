"""Golden bitstream test: guards the ``.apx`` bitstream and the decoder output against silent
changes.

tests/fixtures/ holds a TINY model (``tiny.safetensors``), an image coded with it
(``golden.apx``) and ``golden.json`` with the digests; ``python tests/fixtures/make_golden.py``
regenerates all three (only do so when a change of the bitstream or of the decoder is intended).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from adapix.codec import Codec
from adapix.container import peek_header
from adapix.images import RasterImage

FIXTURES = Path(__file__).parent / "fixtures"


def _load_script():
    spec = importlib.util.spec_from_file_location("adapix_make_golden", FIXTURES / "make_golden.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def script():
    return _load_script()


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads((FIXTURES / "golden.json").read_text())


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(FIXTURES / "tiny.safetensors")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_importing_the_script_writes_nothing():
    before = {p.name: p.stat().st_mtime_ns for p in FIXTURES.iterdir()}
    _load_script()
    assert {p.name: p.stat().st_mtime_ns for p in FIXTURES.iterdir()} == before


def test_fixture_files_match_the_record(golden, codec):
    weights = (FIXTURES / "tiny.safetensors").read_bytes()
    apx = (FIXTURES / "golden.apx").read_bytes()
    assert sha256(weights) == golden["weights_sha256"]
    assert len(apx) == golden["apx_bytes"]
    assert sha256(apx) == golden["apx_sha256"]
    h = peek_header(apx)
    assert (h.width, h.height) == (golden["width"], golden["height"])
    assert h.model_id == golden["model_id"] == codec.model_id
    assert h.weights_hash.hex() == golden["weights_hash"] == codec.loaded.weights_hash.hex()
    assert h.quality == golden["quality"]


def test_fixed_image_is_reproducible(script, golden):
    img = script.golden_image()
    assert img.shape == (golden["height"], golden["width"], 3) and img.dtype == np.uint8
    assert sha256(img.tobytes()) == golden["image_sha256"]


def test_golden_apx_decodes_to_recorded_pixels(codec, golden):
    dec = codec.decode_ex((FIXTURES / "golden.apx").read_bytes())
    px = np.ascontiguousarray(dec.image.pixels)
    assert list(px.shape) == golden["pixels_shape"]
    assert sha256(px.tobytes()) == golden["pixels_sha256"]


def test_reencoding_gives_identical_bytes(codec, script, golden):
    res = codec.encode_ex(RasterImage(script.golden_image()), quality=script.QUALITY)
    assert res.data == (FIXTURES / "golden.apx").read_bytes()
    assert sha256(np.ascontiguousarray(res.reconstruction.pixels).tobytes()) == \
        golden["pixels_sha256"]
