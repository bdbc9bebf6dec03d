"""Tests of adapix.profiles: the encoder profiles are data, run through the codec, never lose
against ``fast`` and produce files any decoder reads."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from adapix import container
from adapix.codec import FINISH_RESERVE
from adapix.errors import AdapixError
from adapix.images import RasterImage, pad_to_multiple, to_tensor
from adapix.model import quality_to_position
from adapix.optimize import GreedySearch, Preset, rd_cost_of, rd_cost_true
from adapix.profiles import PROFILES, Profile, get_profile, split_bf16
from helpers import harm_postfilter


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def raster() -> RasterImage:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:48, 0:60].astype(np.float64)
    px = np.stack([40 + 3 * xx, 60 + 3 * yy, 128 + 80 * np.sin(xx / 5) * np.cos(yy / 7)], -1)
    px += rng.normal(0, 4, px.shape)
    return RasterImage(np.clip(np.rint(px), 0, 255).astype(np.uint8))


def test_profiles_exist_and_are_data():
    assert {"fast", "balanced", "best"} <= set(PROFILES)
    for name, prof in PROFILES.items():
        assert isinstance(prof, Profile) and prof.name == name and prof.description
        assert isinstance(prof.preset, Preset)
        assert name in container.PROFILES.values()  # the header can name it
    assert not PROFILES["fast"].preset.optimizes and not PROFILES["fast"].postfilter
    bal, best = PROFILES["balanced"].preset, PROFILES["best"].preset
    assert bal.optimizes and bal.greedy.enabled and bal.postfilter  # the post-filter is free
    assert best.greedy.enabled and best.postfilter and PROFILES["best"].postfilter
    assert "s" in best.phases[0].optimize  # continuous mode decision: the model stream moves
    assert sum(p.iters for p in best.phases) > sum(p.iters for p in bal.phases)
    assert PROFILES["best"].time_budget > PROFILES["balanced"].time_budget
    # gradient steps from lambda 0.027 up only (docs/ablations.md, sessions 11 and 14)
    for preset in (bal, best):
        assert preset.phases_at(0.026) == () and preset.phases_at(0.028)
        assert preset.phases_at(0.16)
        # below 0.027 the quality decision and fine-tuning the analysis transform instead
        assert preset.finetunes_at(0.026) and not preset.finetunes_at(0.028)
        assert 0 < preset.finetune_share <= 0.6  # the search keeps the rest of the budget
        assert preset.offsets_at(0.026) and preset.offsets_at(0.028) == ()
    assert best.greedy.time_share > bal.greedy.time_share  # best's search has time to spare
    assert best.finetune_iters > bal.finetune_iters
    # best fine-tunes the whole encoder side, measuring the true cost on the way (session 15)
    assert set(best.finetune_modules) == {"g_a", "h_a", "syntax"} and best.finetune_eval_every
    # and more gradient steps at the top, where they still paid (session 16)
    assert best.phases_at(0.129)[0].iters > best.phases_at(0.034)[0].iters
    assert len(best.phases_at(0.034)) == len(best.phases_at(0.129)) == 1


def test_profile_at_a_lambda_keeps_only_what_runs_there():
    """Profile.at: the settings that act at one lambda (what the eval cache keys rows on)."""
    from dataclasses import replace

    best = PROFILES["best"]
    high, low = best.at(0.1), best.at(0.005)
    assert high.time_budget == best.time_budget and high.preset.greedy == best.preset.greedy
    assert high.preset.phases and all(p.min_lambda == 0 for p in high.preset.phases)
    assert not high.preset.encoder_finetune and high.preset.quality_offsets == ()
    assert high.preset.finetune_iters == Preset().finetune_iters  # what does not run: default
    assert low.preset.phases == () and low.preset.quality_offsets == (-4.0,)
    assert low.preset.encoder_finetune and low.preset.finetune_iters == best.preset.finetune_iters
    assert math.isinf(low.preset.finetune_max_lambda)
    # the search after the fine-tuning is best's own below the threshold, its greedy above
    assert low.preset.greedy == best.preset.greedy_after_finetune != best.preset.greedy
    assert low.preset.greedy_after_finetune is None is high.preset.greedy_after_finetune
    # a change to what runs below the threshold leaves the profile above it as it was
    other = replace(best, preset=replace(best.preset, finetune_iters=99))
    assert other.at(0.1) == high and other.at(0.005) != low
    other = replace(best, preset=replace(best.preset, greedy_after_finetune=GreedySearch()))
    assert other.at(0.1) == high and other.at(0.005) != low
    assert PROFILES["fast"].at(0.005) == PROFILES["fast"]
    # every fine-tuning setting is reset where the fine-tuning does not run
    from dataclasses import fields

    from adapix.optimize.presets import _FINETUNE_SETTINGS
    assert {f.name for f in fields(Preset) if f.name.startswith("finetune_")} == {
        *_FINETUNE_SETTINGS, "finetune_max_lambda"}


def test_bf16_suffix_splits_off_in_any_case():
    assert split_bf16("fast+bf16") == ("fast", True)
    assert split_bf16("balanced+BF16") == ("balanced", True)
    assert split_bf16("best") == ("best", False)
    assert split_bf16("+bf16") == ("", True)   # the caller rejects the empty profile


def test_unknown_profile_is_an_adapix_error(tiny_codec, raster):
    with pytest.raises(AdapixError, match="unknown profile 'turbo'"):
        get_profile("turbo")
    with pytest.raises(AdapixError):
        tiny_codec.encode(raster, quality=50, profile="turbo")


def test_fast_profile_is_plain_compress(tiny_codec):
    model = tiny_codec.model
    x = torch.rand(1, 3, 64, 64)
    res = PROFILES["fast"].run(model, x, (64, 64), 2.0, False, time_budget=0.0)
    ref = model.compress(x, 2.0)
    assert res.streams == ref.streams and torch.equal(res.x_hat, ref.x_hat)


@pytest.mark.parametrize("name,postfilter,budget", [("balanced", True, None),
                                                     ("best", True, 3.0)])
def test_optimising_profiles_run_and_never_lose_to_fast(tiny_codec, raster, name, postfilter,
                                                        budget):
    model = tiny_codec.model
    xp, hw = pad_to_multiple(to_tensor(raster), model.cfg.pad_multiple)
    t = quality_to_position(model.cfg, 50.0)
    res = get_profile(name).run(model, xp, hw, t, postfilter, time_budget=budget)
    lat = model.analyse(xp, torch.tensor([t]))
    for flag in (False, postfilter):  # fast itself, and the start with the post-filter
        fast_cost, _ = rd_cost_true(model, lat, t, xp, hw, flag)
        assert rd_cost_of(model, res, xp, hw, t) <= fast_cost
    # (best may code at another quality than the asked one: the result says which)
    dec = model.decompress(res.streams, tuple(xp.shape[-2:]), res.t, res.postfilter)
    assert torch.equal(dec, res.x_hat)


def test_codec_encodes_with_profiles_and_any_decoder_decodes(tiny_codec, raster):
    for name in ("balanced", "best"):
        res = tiny_codec.encode_ex(raster, quality=60, profile=name, time_budget=1.5)
        assert res.profile == name
        dec = tiny_codec.decode_ex(res.data)
        assert dec.header.profile == name
        assert np.array_equal(dec.image.pixels, res.reconstruction.pixels)
    fast = tiny_codec.encode_ex(raster, quality=60, profile="fast")
    zero = tiny_codec.encode_ex(raster, quality=60, profile="balanced", time_budget=0)
    # time budget 0: the optimising profile codes exactly what fast codes (only the header differs)
    a, b = container.unpack(fast.data), container.unpack(zero.data)
    assert a.sections == b.sections


def test_profiles_default_time_budgets_are_their_targets():
    assert PROFILES["balanced"].time_budget == 30.0 and PROFILES["best"].time_budget == 120.0
    assert PROFILES["fast"].time_budget is None
    bal = PROFILES["balanced"]
    assert bal.default_budget((512, 768)) == 30.0
    assert bal.default_budget((48, 60)) == 30.0          # small images get the whole budget
    assert bal.default_budget((1024, 1536)) == 120.0     # 4x the pixels of 768x512, 4x the time
    assert PROFILES["fast"].default_budget((512, 768)) is None


def test_default_budget_applies_unless_overridden(tiny_codec, raster, monkeypatch):
    import math

    import adapix.profiles as profiles_mod

    budgets = []
    real = profiles_mod.optimize_latents

    def spy(*args, **kwargs):
        budgets.append(kwargs["time_budget"])
        return real(*args, **kwargs)

    monkeypatch.setattr(profiles_mod, "optimize_latents", spy)
    model = tiny_codec.model
    xp, hw = pad_to_multiple(to_tensor(raster), model.cfg.pad_multiple)
    t = quality_to_position(model.cfg, 50.0)
    prof = Profile("balanced", "test", PROFILES["balanced"].preset, time_budget=0.0)
    res = prof.run(model, xp, hw, t, False)  # the default budget (0 s): what fast codes
    ref = model.compress(xp, t)
    assert res.streams == ref.streams and torch.equal(res.x_hat, ref.x_hat)
    prof.run(model, xp, hw, t, False, time_budget=0.5)
    prof.run(model, xp, hw, t, False, time_budget=math.inf)
    assert budgets == [0.0, 0.5, math.inf]
    assert PROFILES["best"].default_budget(hw) == 120.0


def test_codec_budget_counts_from_the_start_of_encode(tiny_codec, raster, monkeypatch):
    """The optimisation gets what is left of the budget after the codec's own work (loading,
    padding), so an encode's wall time stays within it; with no budget given, the profile's
    default for the image's size is what is counted down."""
    import time
    from dataclasses import replace

    import adapix.profiles as profiles_mod

    budgets = []
    real = profiles_mod.optimize_latents

    def spy(*args, **kwargs):
        budgets.append(kwargs["time_budget"])
        return real(*args, **{**kwargs, "time_budget": min(kwargs["time_budget"], 1.0)})

    def slow_image(*args, **kwargs):
        time.sleep(0.2)  # the codec's own work before the optimisation starts
        return raster

    monkeypatch.setattr(profiles_mod, "optimize_latents", spy)
    monkeypatch.setattr("adapix.codec.load_image", slow_image)
    tiny_codec.encode_ex("image.png", quality=60, profile="balanced", time_budget=1.0)
    assert 0.0 < budgets[-1] <= 0.8 - 0.02  # less the finishing reserve, 2% of 1 s
    tiny_codec.encode_ex("image.png", quality=60, profile="balanced", time_budget=30.0)
    assert 29.0 < budgets[-1] <= 29.8 - FINISH_RESERVE  # the reserve is capped at 0.2 s
    monkeypatch.setitem(PROFILES, "balanced", replace(PROFILES["balanced"], time_budget=0.5))
    res = tiny_codec.encode_ex("image.png", quality=60, profile="balanced")
    assert 0.0 <= budgets[-1] <= 0.3
    tiny_codec.encode_ex("image.png", quality=60, profile="balanced", time_budget=0.1)
    assert budgets[-1] == 0.0  # spent before the optimisation began: nothing left
    assert res.seconds >= 0.2


def test_profile_presets_stay_within_their_iteration_budget():
    """The shipped presets are sized for their targets (docs/ablations.md): keep them cheap."""
    bal, best = PROFILES["balanced"].preset, PROFILES["best"].preset
    assert sum(p.iters for p in bal.phases) <= 80
    assert sum(p.iters for p in best.phases) <= 320
    for preset in (bal, best):
        evals = sum(-(-p.iters // p.eval_every) for p in preset.phases)
        assert evals <= 4 * len(preset.phases)  # true-cost evaluations are expensive


def test_codec_writes_the_post_filter_flag_the_encoder_chose(make_model, tmp_path, raster):
    """A post-filter that hurts this image is turned off by ``balanced`` (header flag off, the
    decoder follows it); the tiles of a tiled file keep the profile's flag."""
    from adapix.codec import Codec
    from adapix.weights import export_weights

    path = tmp_path / "harmful-pf.safetensors"
    export_weights(harm_postfilter(make_model(0)), path, "tiny-test", fp16=False,
                   postfilter_trained=True)
    codec = Codec(path)
    res = codec.encode_ex(raster, quality=60, profile="balanced", time_budget=1.0)
    dec = codec.decode_ex(res.data)
    assert dec.header.postfilter is False and res.postfilter is False
    assert np.array_equal(dec.image.pixels, res.reconstruction.pixels)
    tiled = codec.encode_ex(raster, quality=60, profile="balanced", time_budget=1.0, tile_size=64)
    dec = codec.decode_ex(tiled.data)
    assert dec.header.tiled and dec.header.postfilter is True and tiled.postfilter is True
    assert np.array_equal(dec.image.pixels, tiled.reconstruction.pixels)


def test_codec_writes_the_quality_the_encoder_chose(tiny_codec, raster, monkeypatch):
    """With a quality mode decision the header carries the quality actually coded, the decoder
    follows it, and the tiles of a tiled file keep the asked quality."""
    from dataclasses import replace

    prof = PROFILES["balanced"]
    preset = replace(prof.preset, phases=(), quality_offsets=(-30.0, -15.0))
    monkeypatch.setitem(PROFILES, "balanced", replace(prof, preset=preset))
    res = tiny_codec.encode_ex(raster, quality=60, profile="balanced", time_budget=math.inf)
    dec = tiny_codec.decode_ex(res.data)
    assert dec.header.quality == res.quality and res.quality in (45.0, 30.0)  # moved here
    assert np.array_equal(dec.image.pixels, res.reconstruction.pixels)
    tiled = tiny_codec.encode_ex(raster, quality=60, profile="balanced", time_budget=math.inf,
                                 tile_size=64)
    assert tiled.quality == 60.0 and tiny_codec.decode_ex(tiled.data).header.quality == 60.0
