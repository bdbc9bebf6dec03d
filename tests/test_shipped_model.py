"""The shipped default model on small images: exact round trips, honest rate estimates."""

from pathlib import Path

import numpy as np
import pytest

from adapix.codec import Codec
from adapix.container import unpack
from adapix.demo import synthetic
from adapix.images import RasterImage, load_image
from adapix.train.config import load_run_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.toml"
KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak" / "kodim05.png"


@pytest.fixture(scope="module")
def codec():
    return Codec()


@pytest.fixture(scope="module")
def photo():
    """A 384x256 crop of a photo (Kodak when ../shared is there), else a synthetic picture."""
    if KODAK.exists():
        px = load_image(KODAK).pixels[64:320, 128:512]
        return RasterImage(pixels=np.ascontiguousarray(px))
    return synthetic(384, 256)


def test_shipped_weights_load_with_tables(codec):
    assert codec.model_id.startswith("adapix-")
    assert codec.decode_steps == 15
    assert codec.loaded.meta["format_version"] == "1"


def test_the_training_config_is_the_shipped_models(codec):
    """`adapix train --config configs/default.toml` trains the model that ships (same sizes, same
    lambda anchors), so the documented training command reproduces it."""
    assert codec.loaded.model.cfg == load_run_config(str(CONFIG)).model


@pytest.mark.parametrize("quality", [10.0, 60.0])
def test_round_trip_exact_and_rate_estimate_within_2_percent(codec, photo, quality):
    enc = codec.encode_ex(photo, quality=quality)
    dec = codec.decode_ex(enc.data)
    assert np.array_equal(dec.image.pixels, enc.reconstruction.pixels)
    f = unpack(enc.data)
    stream_bits = 8 * sum(len(f.sections[k]) for k in f.sections)
    est_bits = enc.est_bpp * enc.width * enc.height
    assert abs(stream_bits - est_bits) / stream_bits < 0.02


def test_quality_is_monotonic_in_rate(codec, photo):
    sizes = [len(codec.encode(photo, quality=q)) for q in (5, 35, 65, 95)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4
