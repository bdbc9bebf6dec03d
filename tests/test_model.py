"""Tests of adapix.model (AdapixModel) with the TINY configuration, directly and through the Codec.

* training forward: shapes, finite bits;
* decode steps: the property, and the real number of sequential coder calls, for a small and a
  large image (it must not depend on the image size);
* compress/decompress: the decoder reproduces the encoder's reconstruction exactly, for odd sizes;
* determinism across thread counts; greyscale, alpha and ICC carried through the codec.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

import adapix.entropy.coder as coder_mod
import adapix.model as model_mod
from adapix.config import TINY
from adapix.images import RasterImage, load_image, pad_to_multiple, to_tensor
from adapix.model import AdapixModel
from adapix.weights import build_tables


def expected_steps(cfg) -> int:
    return 1 + cfg.groups * (1 + 3 * (cfg.scales - 1))


# ---- training forward -------------------------------------------------------------------------

@pytest.mark.parametrize("train", [True, False])
def test_forward_shapes_and_finite_bits(make_model, train):
    model = make_model()
    model.train(train)
    torch.manual_seed(1)
    x = torch.rand(2, 3, 64, 128) if not train else torch.rand(2, 3, 64, 64)
    t = torch.tensor([0.3, 4.7])
    lat = model.analyse(x, t)
    w = x.shape[-1]
    assert lat.y.shape == (2, TINY.M, 4, w // 16)
    assert lat.z.shape == (2, TINY.Nh, 1, w // 64)
    assert lat.s.shape == (2, TINY.syntax_dim)
    with torch.set_grad_enabled(train):
        out = model(x, t, postfilter=train)
    assert out.x_hat.shape == x.shape
    for bits in (out.bits_y, out.bits_z, out.bits_s, out.bits):
        assert bits.shape == (2,)
        assert torch.isfinite(bits).all()
        assert (bits > 0).all()
    assert torch.isfinite(out.x_hat).all()
    if train:  # the loss is differentiable end to end
        (out.bits.sum() + out.x_hat.square().sum()).backward()
        for p in (model.g_a.net[0].weight, model.msp.coarse[0].net[0].weight,
                  model.z_prior.matrices[0], model.generator.synth.weight):
            assert p.grad is not None and torch.isfinite(p.grad).all()


def test_lambda_interpolation_hits_anchors(make_model):
    model = make_model()
    K = len(TINY.lambdas)
    lam = model.lam(torch.arange(K, dtype=torch.float32))
    assert torch.allclose(lam, torch.tensor(TINY.lambdas), rtol=1e-5)


# ---- decode steps -----------------------------------------------------------------------------

@pytest.mark.parametrize("scales,groups", [(3, 2), (2, 1), (4, 3)])
def test_decode_steps_formula(scales, groups):
    cfg = dataclasses.replace(TINY, scales=scales, groups=groups)
    model = AdapixModel(cfg)
    assert model.decode_steps == expected_steps(cfg)
    assert len(model.msp.steps()) == model.msp.decode_steps == expected_steps(cfg) - 1


def test_decode_steps_property_of_codec(tiny_codec):
    assert tiny_codec.decode_steps == expected_steps(TINY) == 15


def _count_decoder_calls(model, monkeypatch, h: int, w: int) -> tuple[int, int, int]:
    """Encodes a random (h, w) image and decodes it, counting the coder calls.
    Returns (StepDecoder.code calls, categorical decodes, StepEncoder.code calls)."""
    counts = {"dec": 0, "cat": 0, "enc": 0}

    class CountingDecoder(model_mod.StepDecoder):
        def code(self, symbols, index):
            counts["dec"] += 1
            return super().code(symbols, index)

    class CountingEncoder(model_mod.StepEncoder):
        def code(self, symbols, index):
            counts["enc"] += 1
            return super().code(symbols, index)

    orig_cat = coder_mod.decode_per_channel

    def counting_cat(*a, **k):
        counts["cat"] += 1
        return orig_cat(*a, **k)

    monkeypatch.setattr(model_mod, "StepDecoder", CountingDecoder)
    monkeypatch.setattr(model_mod, "StepEncoder", CountingEncoder)
    monkeypatch.setattr(coder_mod, "decode_per_channel", counting_cat)
    torch.manual_seed(h + w)
    x = torch.rand(1, 3, h, w)
    res = model.compress(x, 2.5)
    x_dec = model.decompress(res.streams, (h, w), 2.5)
    assert torch.equal(x_dec, res.x_hat)
    monkeypatch.undo()
    return counts["dec"], counts["cat"], counts["enc"]


def test_decode_steps_independent_of_image_size(tiny_codec, monkeypatch):
    model = tiny_codec.model
    small = _count_decoder_calls(model, monkeypatch, 64, 64)
    large = _count_decoder_calls(model, monkeypatch, 512, 1024)
    assert small == large
    dec_calls, cat_calls, enc_calls = small
    # one step for the two side streams (model stream + hyper, decoded independently), then one
    # coder call per MSP step
    assert dec_calls == enc_calls == model.decode_steps - 1 == model.msp.decode_steps
    assert cat_calls == 2


# ---- compress / decompress round trip ---------------------------------------------------------

@pytest.fixture
def spy_model(tiny_codec, monkeypatch):
    """Records the CodingResult of every compress and the tensor of every decompress."""
    model = tiny_codec.model
    seen = {"enc": [], "dec": []}
    orig_c, orig_d = model.compress, model.decompress

    def compress(*a, **k):
        r = orig_c(*a, **k)
        seen["enc"].append(r)
        return r

    def decompress(*a, **k):
        r = orig_d(*a, **k)
        seen["dec"].append(r)
        return r

    monkeypatch.setattr(model, "compress", compress)
    monkeypatch.setattr(model, "decompress", decompress)
    return seen


@pytest.mark.parametrize("h,w", [(1, 1), (17, 33), (511, 769), (768, 512)])
def test_round_trip_exact(tiny_codec, spy_model, synth_image, h, w):
    img = RasterImage(synth_image(h, w, seed=h * 7 + w))
    enc = tiny_codec.encode_ex(img, quality=40)
    dec = tiny_codec.decode_ex(enc.data)
    # tensor level: the decoder's x_hat is bit-identical to the encoder's reconstruction
    (res,), (x_dec,) = spy_model["enc"], spy_model["dec"]
    m = TINY.pad_multiple
    assert x_dec.shape == res.x_hat.shape == (1, 3, -(-h // m) * m, -(-w // m) * m)
    assert torch.equal(x_dec, res.x_hat)
    # pixel level
    assert dec.image.pixels.shape == (h, w, 3)
    assert np.array_equal(dec.image.pixels, enc.reconstruction.pixels)
    assert (dec.header.width, dec.header.height) == (w, h)
    assert enc.width == w and enc.height == h


def test_round_trip_with_postfilter(make_model, synth_image):
    """The post-filter path (per-image weights from the model stream) is also decoded exactly."""
    model = make_model()
    x, _ = pad_to_multiple(to_tensor(RasterImage(synth_image(40, 50, seed=3))), TINY.pad_multiple)
    t = 2.37
    res = model.compress(x, t, postfilter=True)
    plain = model.compress(x, t, postfilter=False)
    x_dec = model.decompress(res.streams, tuple(x.shape[-2:]), t, postfilter=True)
    assert torch.equal(x_dec, res.x_hat)
    assert res.streams == plain.streams  # the post-filter changes no coded data
    assert not torch.equal(res.x_hat, plain.x_hat)  # ... but the (perturbed) filter acts


def test_compress_latents_both_matches_compress_latents(make_model, synth_image):
    """The paired coding (one coding pass, one synthesis, the filter on top) gives exactly the
    two results that coding with the flag off and on gives, and what decoding yields."""
    model = make_model()
    x, _ = pad_to_multiple(to_tensor(RasterImage(synth_image(40, 50, seed=4))), TINY.pad_multiple)
    t = 1.61
    with torch.no_grad():
        lat = model.analyse(x, torch.tensor([t]))
        plain, post = model.compress_latents_both(lat, t)
        for res, pf in ((plain, False), (post, True)):
            ref = model.compress_latents(lat, t, pf)
            assert res.postfilter is pf and res.streams == ref.streams
            assert torch.equal(res.x_hat, ref.x_hat) and res.est_bits == ref.est_bits
            dec = model.decompress(res.streams, tuple(x.shape[-2:]), t, postfilter=pf)
            assert torch.equal(dec, res.x_hat)
    assert not torch.equal(plain.x_hat, post.x_hat)


@pytest.mark.parametrize("rate_modulation", [False, True])
def test_analysis_blocks_start_at_the_identity_and_code_exactly(make_model, synth_image,
                                                                 rate_modulation):
    """g_a with residual blocks (model.analysis_blocks): with the blocks as initialised the
    latent is exactly that of the model without them; once the blocks are non-zero the latent
    changes, the decoder's weights are the same, and the file still decodes exactly."""
    cfg = dataclasses.replace(TINY, rate_modulation=rate_modulation)
    plain = make_model(cfg=cfg)
    deep = AdapixModel(dataclasses.replace(cfg, analysis_blocks=2))
    missing = deep.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("g_a.blocks.") for k in missing)
    deep.eval()
    build_tables(deep)
    x, _ = pad_to_multiple(to_tensor(RasterImage(synth_image(40, 50, seed=6))), TINY.pad_multiple)
    t = torch.tensor([1.4])
    with torch.no_grad():
        assert torch.equal(plain.analyse(x, t).y, deep.analyse(x, t).y)
        for block in deep.g_a.blocks.modules():
            if isinstance(block, torch.nn.Conv2d):
                block.weight.normal_(0, 0.05)
        assert not torch.equal(plain.analyse(x, t).y, deep.analyse(x, t).y)
    res = deep.compress(x, 1.4, postfilter=False)
    assert torch.equal(deep.decompress(res.streams, tuple(x.shape[-2:]), 1.4, postfilter=False),
                       res.x_hat)


@pytest.mark.parametrize("part,changes,keys", [
    ("blocks", {"rate_modulation": True, "synthesis_blocks": 2}, 3 * 2 * 4),
    ("head", {"synthesis_head": 8}, 3 * 2),
])
def test_added_synthesis_parts_start_at_the_identity_and_code_exactly(make_model, synth_image,
                                                                      part, changes, keys):
    """g_s with residual blocks (model.synthesis_blocks) or a full-resolution head
    (model.synthesis_head): as initialised they leave the reconstruction exactly that of the
    model without them; once their zero-started convolutions are not zero they change it, and
    the file still decodes to exactly the encoder's reconstruction, also with the bf16
    synthesis."""
    cfg = dataclasses.replace(TINY, rate_modulation=changes.get("rate_modulation", False))
    plain = make_model(cfg=cfg)
    deep = AdapixModel(dataclasses.replace(cfg, **changes))
    missing = deep.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert len(missing) == keys and all(k.startswith(f"g_s.{part}.") for k in missing)
    deep.eval()
    build_tables(deep)
    x, _ = pad_to_multiple(to_tensor(RasterImage(synth_image(40, 50, seed=7))), TINY.pad_multiple)
    first = deep.compress(x, 1.4, postfilter=False)
    assert torch.equal(first.x_hat, plain.compress(x, 1.4, postfilter=False).x_hat)
    with torch.no_grad():
        for conv in getattr(deep.g_s, part).modules():
            if isinstance(conv, torch.nn.Conv2d) and not conv.weight.any():
                conv.weight.normal_(0, 0.05)
    res = deep.compress(x, 1.4, postfilter=False)
    assert res.streams == first.streams  # the coded latent does not depend on g_s
    assert not torch.equal(res.x_hat, first.x_hat)
    assert torch.equal(deep.decompress(res.streams, tuple(x.shape[-2:]), 1.4, postfilter=False),
                       res.x_hat)
    bf16 = deep.compress(x, 1.4, postfilter=False, bf16=True)
    assert bf16.x_hat.dtype == torch.float32 and bf16.x_hat.shape == res.x_hat.shape
    assert torch.equal(deep.decompress(bf16.streams, tuple(x.shape[-2:]), 1.4, postfilter=False,
                                       bf16=True), bf16.x_hat)


def test_same_bytes_and_pixels_with_1_and_2_threads(tiny_codec, synth_image):
    img = RasterImage(synth_image(130, 200, seed=5))
    before = torch.get_num_threads()
    out = {}
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            enc = tiny_codec.encode_ex(img, quality=63.5)
            dec = tiny_codec.decode_ex(enc.data)
            out[n] = (enc.data, enc.reconstruction.pixels, dec.image.pixels)
    finally:
        torch.set_num_threads(before)
    assert torch.get_num_threads() == before
    assert out[1][0] == out[2][0]
    assert np.array_equal(out[1][1], out[2][1])
    assert np.array_equal(out[1][2], out[2][2])
    assert np.array_equal(out[1][1], out[1][2])


# ---- colour, alpha, ICC -----------------------------------------------------------------------

def test_greyscale_decodes_as_greyscale(tiny_codec, synth_image):
    grey = synth_image(33, 47, seed=2, channels=1)
    im = Image.fromarray(grey[:, :, 0], "L")
    enc = tiny_codec.encode_ex(im, quality=70)
    dec = tiny_codec.decode_ex(enc.data)
    assert dec.header.color == 1
    assert dec.image.is_grey and dec.image.pixels.shape == (33, 47, 1)
    assert np.array_equal(dec.image.pixels, enc.reconstruction.pixels)
    assert tiny_codec.decode(enc.data).mode == "L"


@pytest.mark.parametrize("channels,mode", [(4, "RGBA"), (2, "LA")])
def test_alpha_kept_exactly(tiny_codec, synth_image, channels, mode):
    rgba = synth_image(29, 51, seed=4, channels=4)
    rgba[0, 0, 3] = 0
    rgba[5, 7, 3] = 1
    if channels == 4:
        im = Image.fromarray(rgba, "RGBA")
    else:
        grey = rgba[:, :, :3].mean(axis=2).round().astype(np.uint8)
        im = Image.fromarray(np.stack([grey, rgba[:, :, 3]], axis=2), "LA")
    enc = tiny_codec.encode_ex(im, quality=50)
    dec = tiny_codec.decode_ex(enc.data)
    assert dec.header.alpha
    assert np.array_equal(dec.image.alpha, rgba[:, :, 3])
    assert np.array_equal(dec.image.pixels, enc.reconstruction.pixels)
    out = tiny_codec.decode(enc.data)
    assert out.mode == mode
    assert np.array_equal(np.asarray(out)[:, :, -1], rgba[:, :, 3])


def test_icc_profile_carried(tiny_codec, synth_image, tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = tmp_path / "with_icc.png"
    Image.fromarray(synth_image(20, 30, seed=6)).save(path, icc_profile=icc)
    assert load_image(path).icc == icc
    data = tiny_codec.encode(str(path), quality=50)
    dec = tiny_codec.decode_ex(data)
    assert dec.header.icc
    assert dec.image.icc == icc
    assert tiny_codec.decode(data).info.get("icc_profile") == icc
    # ... and no ICC section when the input has none
    plain = tiny_codec.decode_ex(tiny_codec.encode(RasterImage(synth_image(20, 30)), quality=50))
    assert not plain.header.icc and plain.image.icc is None
