"""Tests of adapix.ratecond: the rate modulation of the transforms' hidden layers starts at the
identity, changes the transforms with the quality once trained, and every path that runs g_a or
g_s (coding, the encoder's proxy synthesis and fine-tuning, widening, re-gridding the anchors,
turning it on for a trained checkpoint) applies it the same way."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from adapix.codec import Codec
from adapix.config import TINY, ModelConfig
from adapix.images import RasterImage, pad_to_multiple
from adapix.model import AdapixModel, adapt_state_to_lambdas
from adapix.optimize import Preset, optimize_latents_ex
from adapix.profiles import PROFILES
from adapix.ratecond import LAYERS, PREFIX, TABLES, add_rate_modulation, interp_rows
from adapix.train.loop import trainable_parameters
from adapix.weights import export_weights, load_weights
from adapix.widen import append_adam_params, widen_state
from helpers import load_script

RM = dataclasses.replace(TINY, rate_modulation=True)
K = len(TINY.lambdas)


@pytest.fixture
def rm_model(make_model):
    """The TINY model with the rate modulation, perturbed (random tables), tables built."""
    return make_model(0, RM)


def _image(seed: int = 0) -> tuple[torch.Tensor, tuple[int, int]]:
    g = torch.Generator().manual_seed(seed)
    return pad_to_multiple(torch.rand(1, 3, 60, 70, generator=g), 64)


def test_config_defaults_off_and_round_trips_through_json():
    assert TINY.rate_modulation is False and AdapixModel(TINY).rate_mod is None
    assert ModelConfig.from_json(RM.to_json()) == RM
    # weights files written before the field existed have no such key: the default applies
    legacy = RM.to_json().replace('"rate_modulation": true, ', "")
    assert "rate_modulation" not in legacy and ModelConfig.from_json(legacy) == TINY
    with pytest.raises(ValueError, match="rate_modulation"):
        dataclasses.replace(TINY, rate_modulation=1)


def test_added_modulation_is_the_identity(make_model):
    plain = make_model(0)
    mod = AdapixModel(RM).eval()
    mod.load_state_dict(add_rate_modulation(plain.state_dict(), K, TINY.N))
    xp, _ = _image()
    for t in (0.0, 1.3, K - 1.0):
        tt = torch.tensor([t])
        with torch.no_grad():
            a, b = plain.analyse(xp, tt), mod.analyse(xp, tt)
            assert torch.equal(a.y, b.y)
            x_a = plain.synthesize(torch.round(a.y), torch.round(a.s), tt, True)
            x_b = mod.synthesize(torch.round(b.y), torch.round(b.s), tt, True)
        assert torch.equal(x_a, x_b)
    # the tables are the model's last parameters (an optimiser state without them keeps fitting)
    names = [n for n, _ in mod.named_parameters()]
    assert names[-len(TABLES):] == [PREFIX + n for n in TABLES]
    assert names[: -len(TABLES)] == [n for n, _ in plain.named_parameters()]
    with pytest.raises(ValueError, match="only some"):
        add_rate_modulation({PREFIX + TABLES[0]: torch.zeros(K, LAYERS, TINY.N)}, K, TINY.N)


def test_tables_change_the_transforms_with_the_quality(rm_model, make_model):
    plain = make_model(0)  # same weights apart from the tables
    xp, _ = _image()
    y = {t: rm_model.analyse(xp, torch.tensor([t])).y for t in (1.0, 1.5, 2.0)}
    assert not torch.allclose(y[1.0], plain.analyse(xp, torch.tensor([1.0])).y, atol=1e-3)
    # at an anchor, the modulation is that anchor's row
    scale, shift = rm_model.rate_mod.analysis(torch.tensor([2.0]))
    assert torch.allclose(scale[0], rm_model.rate_mod.a_log_scale[2].exp())
    assert torch.allclose(shift[0], rm_model.rate_mod.a_shift[2])
    # in between, the rows are interpolated linearly
    half = interp_rows(rm_model.rate_mod.s_shift, torch.tensor([1.5]))[0]
    ref = 0.5 * (rm_model.rate_mod.s_shift[1] + rm_model.rate_mod.s_shift[2])
    assert torch.allclose(half, ref)


def test_rate_modulated_model_codes_and_decodes_exactly(rm_model, tmp_path):
    path = tmp_path / "rm.safetensors"
    export_weights(rm_model, path, "tiny-rm", fp16=False)
    loaded = load_weights(path).model
    assert loaded.cfg == RM
    for name in TABLES:
        assert torch.equal(getattr(loaded.rate_mod, name), getattr(rm_model.rate_mod, name))
    codec = Codec(path)
    img = RasterImage(np.random.default_rng(3).integers(0, 256, (37, 45, 3), dtype=np.uint8))
    for profile in sorted(PROFILES):
        res = codec.encode_ex(img, quality=60, profile=profile, time_budget=0.3)
        dec = codec.decode_ex(res.data)
        assert np.array_equal(dec.image.pixels, res.reconstruction.pixels), profile


@pytest.mark.parametrize("precision", ["fp32cl", "bf16"])
def test_proxy_synthesis_applies_the_modulation(rm_model, precision):
    from adapix.optimize.proxy import ProxySynthesis, _frozen

    xp, _ = _image(1)
    t = 3.4
    lat = rm_model.analyse(xp, torch.tensor([t]))
    with _frozen(rm_model), torch.no_grad():
        y, s = torch.round(lat.y), torch.round(lat.s)
        ref = rm_model.synthesize(y, s, torch.tensor([t]), True)
        out = ProxySynthesis(rm_model, t, True, precision)(y, s)
    assert (out - ref).abs().max() < (0.02 if precision == "bf16" else 1e-5)


def test_encoder_finetune_starts_from_the_modulated_analysis(rm_model):
    """The fine-tuned copy of g_a runs with the model's modulation: one step at a negligible
    learning rate measures the same cost as the start (without it, y would be another)."""
    xp, hw = _image(2)
    preset = Preset(encoder_finetune=True, finetune_iters=1, finetune_lr=1e-12,
                    finetune_eval_every=1)
    out = optimize_latents_ex(rm_model, xp, hw, 2.5, preset)
    start = [c for stage, _, c in out.stats.history if stage == "start"]
    tuned = [c for stage, _, c in out.stats.history if stage == "finetune"]
    assert len(start) == 1 and len(tuned) == 1
    assert tuned[0] == pytest.approx(start[0], rel=1e-4)


def test_widening_and_regridding_carry_the_tables(rm_model):
    xp, _ = _image(3)
    wide = AdapixModel(dataclasses.replace(RM, N=TINY.N + 8)).eval()
    wide.load_state_dict(widen_state(rm_model.state_dict(), RM, wide))
    tt = torch.tensor([4.2])
    with torch.no_grad():
        assert torch.allclose(wide.analyse(xp, tt).y, rm_model.analyse(xp, tt).y, atol=1e-4)
    new_rows = wide.rate_mod.a_log_scale[:, :, TINY.N:]
    assert torch.equal(new_rows, torch.zeros_like(new_rows))  # new channels: the identity
    lams = TINY.lambdas
    more = (lams[0] / 4,) + lams
    state = adapt_state_to_lambdas(rm_model.state_dict(), lams, more)
    for name in TABLES:
        table = state[PREFIX + name]
        assert table.shape == (K + 1, LAYERS, TINY.N)
        assert torch.equal(table[1:], getattr(rm_model.rate_mod, name).detach())


def _adam_after_one_step(model: AdapixModel) -> torch.optim.Adam:
    """An Adam optimiser of the model's main-stage parameters with state (one step taken)."""
    params = trainable_parameters(model, "main")
    opt = torch.optim.Adam(params, lr=1e-3)
    sum(p.sum() for p in params).backward()
    opt.step()
    return opt


def test_append_adam_params_keeps_the_old_states():
    opt = _adam_after_one_step(AdapixModel(TINY))
    n_old, state = len(opt.param_groups[0]["params"]), opt.state_dict()
    grown = AdapixModel(RM)
    new_params = trainable_parameters(grown, "main")
    out = append_adam_params(state, len(new_params))
    assert out["param_groups"][0]["params"] == list(range(len(new_params)))
    fresh = torch.optim.Adam(new_params, lr=1e-3)
    fresh.load_state_dict(out)  # fits
    for i in range(n_old):
        assert torch.equal(fresh.state_dict()["state"][i]["exp_avg"], state["state"][i]["exp_avg"])
    assert all(i not in out["state"] for i in range(n_old, len(new_params)))
    with pytest.raises(ValueError):
        append_adam_params(state, n_old - 1)


def test_checkpoint_script_turns_it_on_with_the_adam_state(tmp_path, capsys):
    script = load_script("widen_checkpoint")
    model = AdapixModel(TINY)
    opt = _adam_after_one_step(model)
    ck = {"model": model.state_dict(), "opt": opt.state_dict(), "step": 7, "elapsed": 1.0,
          "model_config": dataclasses.asdict(TINY), "train_config": {}}
    torch.save(ck, tmp_path / "ck.pt")
    assert script.main([str(tmp_path / "ck.pt"), str(tmp_path / "out")]) == 2  # nothing to do
    assert "nothing to do" in capsys.readouterr().err
    assert script.main([str(tmp_path / "ck.pt"), str(tmp_path / "out"), "--rate-modulation"]) == 0
    out = torch.load(tmp_path / "out" / "checkpoint.pt", weights_only=False)
    assert out["model_config"]["rate_modulation"] is True and out["step"] == 7
    grown = AdapixModel(RM)
    grown.load_state_dict(out["model"])
    new_params = trainable_parameters(grown, "main")
    resumed = torch.optim.Adam(new_params, lr=1e-3)
    resumed.load_state_dict(out["opt"])
    assert torch.equal(resumed.state_dict()["state"][0]["exp_avg_sq"],
                       ck["opt"]["state"][0]["exp_avg_sq"])
    # a second time is refused (the folder has a checkpoint)
    assert script.main([str(tmp_path / "ck.pt"), str(tmp_path / "out"), "--rate-modulation"]) == 2
