"""Every codec round trips a small synthetic image with sane quality and rate ordering.

A codec that is unavailable is skipped with its reason, unless the library it needs is installed
(then it is broken and the test fails). Pillow (JPEG/WebP/AVIF), pillow-heif and imagecodecs
(JPEG XL, JPEG 2000) are expected to work wherever the ``eval`` extra is installed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import pickle

import numpy as np
import pytest

from adapix.container import peek_header
from adapix.eval import codecs as C
from adapix.eval.metrics import psnr
from adapix.eval.results import param_key

# codec -> module whose presence means "installed", so unavailability is a failure
REQUIRED_MODULE = {
    "jpeg420": "PIL",
    "jpeg444": "PIL",
    "webp": "PIL",
    "avif": "PIL",
    "avif444": "PIL",
    "heic": "pillow_heif",
    "heic444": "pillow_heif",
    "jxl": "imagecodecs",
    "jpeg2000": "imagecodecs",
    "vvc": "imageio_ffmpeg",
}
# reasons that mean "built without this feature", not "broken"
FEATURE_MISSING = ("was built without", "has no libvvenc", "has no vvc decoder", "has no x265", "no ffmpeg binary")

CONVENTIONAL = [n for n in C.CODECS if n != "adapix"]


def _codec_or_skip(name: str) -> C.Codec:
    codec = C.get_codec(name)
    reason = codec.available()
    if reason is None:
        return codec
    module = REQUIRED_MODULE.get(name)
    installed = module is not None and importlib.util.find_spec(module) is not None
    if installed and not any(s in reason for s in FEATURE_MISSING):
        pytest.fail(f"{name}: {module} is installed but the codec is unavailable: {reason}")
    pytest.skip(f"{name}: {reason}")


def test_registry_and_get_codecs():
    names = [c.name for c in C.get_codecs("all")]
    assert names == list(C.CODECS)
    assert [c.name for c in C.get_codecs("jpeg444, webp,jpeg444")] == ["jpeg444", "webp"]
    assert C.get_codec("jpeg").name == "jpeg420"  # alias
    assert C.get_codec("adapix:fast").name == "adapix-fast"
    with pytest.raises(ValueError, match="unknown codec"):
        C.get_codecs("jpeg,nope")
    for codec in C.get_codecs("all"):
        assert codec.name and codec.description
        params = codec.params()
        assert 6 <= len(params) <= 10


def test_expected_codecs_available_here():
    """The libraries of the eval extra are installed here; these codecs must not be skipped."""
    for name in ("jpeg420", "jpeg444", "webp", "heic", "heic444", "jxl", "jpeg2000"):
        assert C.get_codec(name).available() is None, name


@pytest.mark.parametrize("name", CONVENTIONAL)
def test_round_trip_mid_param(name, image64):
    codec = _codec_or_skip(name)
    params = codec.params()
    data = codec.encode(image64, params[len(params) // 2])
    assert isinstance(data, bytes) and len(data) > 0
    out = codec.decode(data)
    assert out.shape == image64.shape and out.dtype == np.uint8
    assert psnr(image64, out) > 20.0
    assert len(data) < image64.size  # it compresses


@pytest.mark.parametrize("name", CONVENTIONAL)
def test_rate_and_quality_follow_the_param(name, image64):
    codec = _codec_or_skip(name)
    params = codec.params()
    picks = [params[0], params[len(params) // 2], params[-1]]
    sizes, quality = [], []
    for p in picks:
        data = codec.encode(image64, p)
        sizes.append(len(data))
        quality.append(psnr(image64, codec.decode(data)))
    assert sizes[0] <= sizes[1] <= sizes[2], sizes
    assert sizes[0] < sizes[2], sizes
    assert quality[2] > quality[0], quality


@pytest.mark.parametrize("name", CONVENTIONAL)
def test_odd_size(name, make_image):
    codec = _codec_or_skip(name)
    img = make_image(17, 33, seed=3)
    params = codec.params()
    out = codec.decode(codec.encode(img, params[-1]))
    assert out.shape == img.shape
    assert psnr(img, out) > 20.0


def test_file_signatures(image64):
    """Real file formats: check the magic numbers."""
    magic = {
        "jpeg444": lambda d: d[:2] == b"\xff\xd8",
        "webp": lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP",
        "avif": lambda d: d[4:8] == b"ftyp" and b"avif" in d[8:32],
        "heic": lambda d: d[4:8] == b"ftyp" and b"heic" in d[8:32],
        "jxl": lambda d: d[:2] == b"\xff\x0a" or d[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n",
        "jpeg2000": lambda d: d[:4] == b"\xff\x4f\xff\x51",
        "vvc": lambda d: d[:3] == b"\x00\x00\x01" or d[:4] == b"\x00\x00\x00\x01",
    }
    for name, check in magic.items():
        codec = C.get_codec(name)
        if codec.available() is not None:
            continue
        data = codec.encode(image64, codec.params()[len(codec.params()) // 2])
        assert check(data), (name, data[:16])


def test_vvc_odd_size_carries_size_sei(make_image):
    codec = _codec_or_skip("vvc")
    img = make_image(33, 45, seed=4)
    data = codec.encode(img, 30)
    assert C._find_size_sei(data) == (45, 33)
    even = codec.encode(make_image(64, 64, seed=4), 30)
    assert C._find_size_sei(even) is None


def test_yuv420p10_conversion_is_near_lossless_on_smooth_images():
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float64)
    img = np.stack([40 + 3 * xx, 60 + 2 * yy, 200 - 1.5 * (xx + yy) / 2], -1).round().astype(np.uint8)
    buf, pw, ph = C._rgb_to_yuv420p10(img)
    assert len(buf) == 2 * (pw * ph + 2 * (pw // 2) * (ph // 2))
    back = C._yuv420p10_to_rgb(buf, pw, ph, 64, 64)
    assert psnr(img, back) > 45.0


def test_check_rgb_rejects_bad_input():
    with pytest.raises(ValueError):
        C.check_rgb(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError):
        C.check_rgb(np.zeros((8, 8, 3), np.float32))


def test_adapix_codec_works_and_reports_why_not(tmp_path, image64):
    """A tiny random model codes through the codec (default profile, then bf16); a weights file
    that cannot be loaded makes the codec unavailable with a one-line reason, not an exception."""
    import torch

    from adapix.config import TINY
    from adapix.model import AdapixModel
    from adapix.weights import export_weights

    assert C.AdapixCodec().available() is None  # the shipped model
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a weights file")
    reason = C.AdapixCodec(weights=str(bad)).available()
    assert isinstance(reason, str) and "cannot be loaded" in reason and "\n" not in reason
    torch.manual_seed(0)
    path = tmp_path / "tiny.safetensors"
    export_weights(AdapixModel(TINY), path, model_id="eval-test-tiny")
    codec = C.AdapixCodec(weights=str(path))
    assert codec.available() is None
    assert "eval-test-tiny" in codec.fingerprint()
    data = codec.encode(image64, 50)
    out = codec.decode(data)
    assert out.shape == image64.shape and out.dtype == np.uint8
    assert math.isfinite(psnr(image64, out))
    bf = C.get_codec("adapix:fast+bf16")
    assert (bf.name, bf.profile, bf.bf16) == ("adapix-fast-bf16", "fast", True)
    bf.weights = str(path)
    assert bf.fingerprint(50).endswith(" bf16") and not codec.fingerprint(50).endswith(" bf16")
    data_bf = bf.encode(image64, 50)
    assert peek_header(data_bf).bf16 and not peek_header(data).bf16
    assert bf.decode(data_bf).shape == image64.shape


def test_adapix_options_are_explicit():
    """--adapix-qualities/--adapix-weights reach the codecs as AdapixOptions; bad lists are refused."""
    assert C.AdapixCodec("balanced").params() == [5, 15, 25, 35, 50, 65, 80, 95, 100]
    assert C.AdapixCodec("balanced", qualities=[65, 15, 35, 95, 15]).params() == [15, 35, 65, 95]
    assert C.AdapixCodec("balanced", qualities="65,15, 35,95,15").params() == [15, 35, 65, 95]
    assert C.parse_qualities("12.5,40") == [12.5, 40]
    for bad in ("", "50", "a,b", "10,101", "-1,5"):
        with pytest.raises(ValueError):
            C.parse_qualities(bad)
    for bad in ([50], [50, 50.0], [10, 101], [-1, 5], ["a", 5], [float("nan"), 5], "50"):
        with pytest.raises(ValueError):
            C.AdapixOptions(qualities=bad)
    # integral qualities are ints, as parse_qualities gives them: they key the cache as "50", not "50.0"
    opts = C.AdapixOptions(weights="w.safetensors", qualities=(95.0, 50.0, 12.5))
    assert opts.qualities == (12.5, 50, 95) and [type(q) for q in opts.qualities] == [float, int, int]
    assert [param_key(q) for q in opts.qualities] == ["12.5", "50", "95"]
    assert opts == C.AdapixOptions("w.safetensors", (12.5, 50, 95)) and hash(opts)
    assert pickle.loads(pickle.dumps(opts)) == opts  # it travels to the worker processes
    assert C.AdapixOptions() == C.AdapixOptions(None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.qualities = (1, 2)
    # every Adapix codec of a request gets the options; the other codecs are not affected
    codecs = {c.name: c for c in C.get_codecs("all,adapix:fast,adapix:best+bf16", opts)}
    for name in ("adapix", "adapix-fast", "adapix-best-bf16"):
        assert codecs[name].params() == [12.5, 50, 95] and codecs[name].weights == "w.safetensors"
    assert codecs["jpeg444"].params() == C.get_codec("jpeg444").params()
    plain = C.get_codec("adapix:fast")
    assert plain.params() == list(C.DEFAULT_QUALITIES) and plain._weights() is None


def test_stale_adapix_environment_has_no_effect(monkeypatch, capsys):
    """The variables through which `adapix eval` once passed its Adapix options are not read any
    more: a stale environment changes neither the sweep, nor the model, nor the cache key."""
    import os

    from adapix.cli.eval import main

    monkeypatch.delenv("ADAPIX_EVAL_QUALITIES", raising=False)
    monkeypatch.delenv("ADAPIX_EVAL_WEIGHTS", raising=False)
    clean = C.get_codec("adapix:fast")
    assert clean.available() is None
    fingerprint = clean.fingerprint(50)
    assert "weights default" in fingerprint

    monkeypatch.setenv("ADAPIX_EVAL_QUALITIES", "15,95")
    monkeypatch.setenv("ADAPIX_EVAL_WEIGHTS", "/no/such/weights.safetensors")
    for codec in (C.get_codec("adapix:fast"), C.AdapixCodec("fast")):
        assert codec.params() == list(C.DEFAULT_QUALITIES)
        assert codec._weights() is None
        assert codec.available() is None  # the bogus weights path is not used
        assert codec.fingerprint(50) == fingerprint
    assert main(["--list", "--reference", "none"]) == 0
    assert f"quality = {list(C.DEFAULT_QUALITIES)}" in capsys.readouterr().out

    # and the CLI does not set them either
    monkeypatch.delenv("ADAPIX_EVAL_QUALITIES")
    monkeypatch.delenv("ADAPIX_EVAL_WEIGHTS")
    assert main(["--list", "--reference", "none", "--adapix-qualities", "20,60"]) == 0
    assert "quality = [20, 60]" in capsys.readouterr().out
    assert not any(k.startswith("ADAPIX_EVAL") for k in os.environ)


def test_adapix_fingerprint_follows_the_profile_settings(monkeypatch):
    """Cached results of a profile are not reused once its settings change."""
    from dataclasses import replace

    import adapix.profiles as profiles

    before = C.AdapixCodec("balanced")._profile_digest()
    assert before.startswith("profile balanced ")
    assert C.AdapixCodec("balanced")._profile_digest() == before  # stable
    changed = replace(profiles.PROFILES["balanced"], time_budget=31.0)
    monkeypatch.setitem(profiles.PROFILES, "balanced", changed)
    assert C.AdapixCodec("balanced")._profile_digest() != before
    assert C.AdapixCodec(None)._profile_digest().startswith("profile fast ")


def test_adapix_profile_digest_is_per_quality(monkeypatch):
    """A change to what a profile does below some lambda re-measures only the qualities below
    it (the shipped model: lambda 0.027 is quality 71.4); defaults are not hashed."""
    from dataclasses import replace

    import adapix.profiles as profiles
    from adapix.eval.codecs.adapix_codec import settings
    from adapix.optimize import Preset

    assert settings(Preset()) == {"type": "Preset"}
    codec = C.AdapixCodec("best")
    low, high = codec.fingerprint(39.285714), codec.fingerprint(96.428571)
    assert low != high and "profile best " in low
    best = profiles.PROFILES["best"]
    changed = replace(best, preset=replace(best.preset, finetune_iters=best.preset.finetune_iters + 1))
    monkeypatch.setitem(profiles.PROFILES, "best", changed)
    assert codec.fingerprint(39.285714) != low
    assert codec.fingerprint(96.428571) == high
    assert C.AdapixCodec("best")._profile_digest() != C.AdapixCodec("best")._profile_digest(50)
