"""Tests of adapix.widen: a model widened from N to N' > N (or M to M' > M) computes the same
function and can learn with its new channels."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from PIL import Image

from adapix.config import TINY
from adapix.model import AdapixModel
from adapix.train.loop import trainable_parameters
from adapix.weights import build_tables, export_weights
from adapix.widen import (index_maps, latent_index, new_latent_mask, widen_adam_state,
                          widen_state)
from helpers import load_script


def trained_like(cfg, seed=0) -> AdapixModel:
    """A tiny model whose parameters are all perturbed away from their init (so GDN's gamma has
    off-diagonal terms and the generator's zero-initialised outputs are not zero)."""
    torch.manual_seed(seed)
    model = AdapixModel(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def outputs(model: AdapixModel, x: torch.Tensor):
    y = model.g_a(x)
    delta = model.generator(model.syntax(y)).synthesis_delta
    return y, model.g_s(y, delta)


def test_widened_model_computes_the_same_function():
    narrow = trained_like(TINY)
    wide = AdapixModel(dataclasses.replace(TINY, N=TINY.N + 8))
    wide.load_state_dict(widen_state(narrow.state_dict(), TINY, wide))
    wide.eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        (y0, x0), (y1, x1) = outputs(narrow, x), outputs(wide, x)
        assert torch.allclose(y0, y1, atol=1e-5, rtol=1e-5)
        assert torch.allclose(x0, x1, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(x0, torch.zeros_like(x0))
        # the new channels are exactly zero after the first layer of each transform
        h = wide.g_a.net[1](wide.g_a.net[0](x))
        assert torch.equal(h[:, TINY.N:], torch.zeros_like(h[:, TINY.N:]))
    # everything that is not N-sized is the narrow model's, unchanged
    narrow_state = narrow.state_dict()
    for key, value in wide.state_dict().items():
        if value.shape == narrow_state[key].shape:
            assert torch.equal(value, narrow_state[key]), key


def test_new_channels_get_a_gradient():
    narrow = trained_like(TINY)
    wide = AdapixModel(dataclasses.replace(TINY, N=TINY.N + 8))
    wide.load_state_dict(widen_state(narrow.state_dict(), TINY, wide))
    x = torch.rand(1, 3, 64, 64)
    y, x_hat = outputs(wide, x)
    ((x_hat - x) ** 2).mean().backward()
    for conv in (wide.g_a.net[0], wide.g_a.net[2]):
        assert conv.weight.grad[TINY.N:].abs().sum() > 0  # incoming weights of new channels
    assert wide.g_s.body[0].weight.grad[:, TINY.N:].abs().sum() > 0  # ConvTranspose: (in, out)


def test_only_a_growing_n_or_m_is_accepted():
    narrow = trained_like(TINY)
    with pytest.raises(ValueError, match="N to grow"):
        widen_state(narrow.state_dict(), TINY, AdapixModel(dataclasses.replace(TINY, N=8)))
    with pytest.raises(ValueError, match="M to grow"):
        widen_state(narrow.state_dict(), TINY, AdapixModel(dataclasses.replace(TINY, M=16)))
    with pytest.raises(ValueError, match="differ in Nh"):
        widen_state(narrow.state_dict(), TINY,
                    AdapixModel(dataclasses.replace(TINY, N=24, Nh=24)))


def test_synthesis_alone_widens_to_the_same_function_and_codes_exactly():
    """model.synthesis_channels: g_s (its layers, the rate modulation of its hidden layers and
    the generator's per-image weights) grows from N to Ns while g_a keeps N. As widened, the
    streams and the reconstruction are the narrow model's; once the new channels are used, the
    file still decodes to exactly the encoder's reconstruction, and the proxy synthesis of the
    encoder's optimisation follows the wider g_s. A narrower g_s is refused."""
    from adapix.optimize.proxy import ProxySynthesis

    cfg = dataclasses.replace(TINY, rate_modulation=True)
    narrow = trained_like(cfg)
    wide_cfg = dataclasses.replace(cfg, synthesis_channels=TINY.N + 8)
    wide = AdapixModel(wide_cfg)
    wide.load_state_dict(widen_state(narrow.state_dict(), cfg, wide))
    wide.eval()
    assert wide_cfg.Ns == TINY.N + 8 and cfg.Ns == TINY.N
    assert wide.g_a.net[0].out_channels == TINY.N and wide.g_s.body[0].out_channels == wide_cfg.Ns
    assert wide.rate_mod.a_shift.shape[-1] == TINY.N
    assert wide.rate_mod.s_shift.shape[-1] == wide_cfg.Ns
    for m in (narrow, wide):
        build_tables(m)
    x = torch.rand(1, 3, 64, 64)
    first, plain = wide.compress(x, 3.0), narrow.compress(x, 3.0)
    assert first.streams == plain.streams
    assert torch.allclose(first.x_hat, plain.x_hat, atol=1e-5)
    with torch.no_grad():  # the new channels come alive: the layer producing them was zero
        wide.g_s.body[0].weight[:, TINY.N:].normal_(0, 0.05)  # ConvTranspose2d: (in, out, k, k)
    res = wide.compress(x, 3.0)
    assert res.streams == first.streams  # the coded latent does not depend on g_s
    assert (res.x_hat - first.x_hat).abs().max() > 1e-3
    assert torch.equal(wide.decompress(res.streams, (64, 64), 3.0), res.x_hat)
    with torch.no_grad():
        lat = wide.analyse(x, torch.tensor([3.0]))
        y, s_hat = torch.round(lat.y), torch.round(lat.s)
        ref = wide.synthesize(y, s_hat, torch.tensor([3.0]), False)
        out = ProxySynthesis(wide, 3.0, False, "fp32cl")(y, s_hat)
    assert (out - ref).abs().max() < 1e-5
    with pytest.raises(ValueError, match="Ns to grow"):
        widen_state(wide.state_dict(), wide_cfg, AdapixModel(cfg))


@pytest.mark.parametrize("change", [{"N": TINY.N + 8}, {"M": TINY.M + 8},
                                    {"synthesis_channels": TINY.N + 8}], ids=["N", "M", "Ns"])
def test_widening_keeps_the_function_with_synthesis_blocks_and_head(change):
    """g_s's residual blocks and full-resolution head widen with the rest (the head's first
    layer reads g_s's channels)."""
    cfg = dataclasses.replace(TINY, synthesis_blocks=1, synthesis_head=8)
    narrow = trained_like(cfg)
    wide = AdapixModel(dataclasses.replace(cfg, **change))
    wide.load_state_dict(widen_state(narrow.state_dict(), cfg, wide))
    wide.eval()
    x, t = torch.rand(1, 3, 64, 64), torch.tensor([3.0])
    with torch.no_grad():
        assert torch.allclose(narrow(x, t).x_hat, wide(x, t).x_hat, atol=1e-5)
    assert wide.g_s.head.up.in_channels == wide.cfg.Ns


def test_adam_state_widens_so_the_trained_block_steps_as_before():
    """One Adam step of the narrow model and of its widened copy (moments widened): the new
    channels are zero, so the trained block gets the same gradients and moves the same way."""
    narrow = trained_like(TINY)
    opt = torch.optim.Adam(narrow.parameters(), lr=1e-3)
    x = torch.rand(1, 3, 64, 64)

    def step(model, optimiser):
        optimiser.zero_grad()
        _, x_hat = outputs(model, x)
        ((x_hat - x) ** 2).mean().backward()
        optimiser.step()

    step(narrow, opt)  # moments that are not zero
    wide = AdapixModel(dataclasses.replace(TINY, N=TINY.N + 8))
    wide.load_state_dict(widen_state(narrow.state_dict(), TINY, wide))
    wide_opt = torch.optim.Adam(wide.parameters(), lr=1e-3)
    wide_opt.load_state_dict(widen_adam_state(opt.state_dict(), list(wide.parameters())))
    sq = wide_opt.state[wide.g_a.net[0].weight]["exp_avg_sq"]
    assert torch.allclose(sq[TINY.N:], sq[:TINY.N].mean().expand_as(sq[TINY.N:]))
    step(narrow, opt)
    step(wide, wide_opt)
    for (key, a), b in zip(narrow.state_dict().items(), wide.state_dict().values()):
        block = b[tuple(slice(0, n) for n in a.shape)]
        assert torch.allclose(a, block, atol=1e-6), key
    with pytest.raises(ValueError, match="parameters"):
        widen_adam_state(opt.state_dict(), list(wide.parameters())[:-1])


WIDE_M = dataclasses.replace(TINY, M=TINY.M + 8)  # two groups of 12 -> two groups of 16


def test_latent_channels_keep_their_group_and_place():
    index = latent_index(TINY, WIDE_M)
    assert index.tolist() == list(range(12)) + list(range(16, 28))
    maps = index_maps(TINY, AdapixModel(WIDE_M))
    # the second group's context net reads [features | first group], the first group's at 0..11
    ctx = maps["msp.coarse.1.net.0.weight"][1]
    assert ctx.tolist() == list(range(48)) + list(range(64, 76))
    assert maps["msp.coarse.1.net.6.bias"][0].tolist() == list(range(12)) + list(range(16, 28))


@pytest.fixture
def m_widened(make_model):
    """(the perturbed TINY model, its copy widened to WIDE_M), tables built, in eval mode."""
    narrow = make_model(0)
    wide = AdapixModel(WIDE_M)
    wide.load_state_dict(widen_state(narrow.state_dict(), TINY, wide))
    wide.eval()
    build_tables(wide)
    return narrow, wide


def test_m_widened_model_codes_the_same_image(m_widened):
    """The whole model, entropy coding included: the same reconstruction; the new latent channels
    are 0 and cost next to nothing."""
    narrow, wide = m_widened
    x = torch.rand(1, 3, 64, 128)
    t = torch.tensor([3.0])
    with torch.no_grad():
        a, b = narrow(x, t), wide(x, t)
        lat = wide.analyse(x, t)
    assert torch.allclose(a.x_hat, b.x_hat, atol=1e-5)
    assert torch.equal(lat.y[:, latent_index(TINY, WIDE_M)], narrow.analyse(x, t).y)
    new = new_latent_mask(TINY, WIDE_M)
    assert torch.equal(lat.y[:, new], torch.zeros_like(lat.y[:, new]))
    assert torch.allclose(a.bits_z, b.bits_z) and torch.allclose(a.bits_s, b.bits_s)
    positions = x.shape[2] * x.shape[3] // 256
    assert 0 <= float(b.bits_y - a.bits_y) < 1e-3 * positions * 8
    coded_a, coded_b = narrow.compress(x, 3.0), wide.compress(x, 3.0)
    assert torch.allclose(coded_a.x_hat, coded_b.x_hat, atol=1e-5)
    assert float(a.bits_y) > 50  # the image is not coded as all zeros
    decoded = wide.decompress(coded_b.streams, (64, 128), 3.0)
    assert torch.equal(decoded, coded_b.x_hat)
    assert len(coded_b.streams.content) <= len(coded_a.streams.content) + 4


def test_new_latent_channels_get_a_gradient(m_widened):
    _, wide = m_widened
    wide.train()
    x = torch.rand(2, 3, 64, 64)
    out = wide(x, torch.tensor([5.0, 5.0]))
    (out.bits.mean() / 4096 + 0.16 * 255 ** 2 * ((out.x_hat - x) ** 2).mean()).backward()
    new = new_latent_mask(TINY, WIDE_M)
    assert wide.g_a.net[6].weight.grad[new].abs().sum() > 0


def test_adam_state_follows_the_latent_layout(m_widened):
    narrow, _ = m_widened
    opt = torch.optim.Adam(narrow.parameters(), lr=1e-3)
    x = torch.rand(1, 3, 64, 64)
    opt.zero_grad()
    ((narrow(x, torch.tensor([2.0])).x_hat - x) ** 2).mean().backward()
    opt.step()
    wide = AdapixModel(WIDE_M)
    wide.load_state_dict(widen_state(narrow.state_dict(), TINY, wide))
    maps = index_maps(TINY, wide)
    names = [k for k, _ in wide.named_parameters()]
    state = widen_adam_state(opt.state_dict(), list(wide.parameters()),
                             [maps.get(k) for k in names])
    i = names.index("g_a.net.6.weight")
    narrow_avg = opt.state_dict()["state"][i]["exp_avg"]
    wide_avg = state["state"][i]["exp_avg"]
    index = latent_index(TINY, WIDE_M)
    assert torch.equal(wide_avg[index], narrow_avg)
    new = torch.ones(WIDE_M.M, dtype=torch.bool)
    new[index] = False
    assert torch.equal(wide_avg[new], torch.zeros_like(wide_avg[new]))
    with pytest.raises(ValueError, match="index maps"):
        widen_adam_state(opt.state_dict(), list(wide.parameters()), [None])


def test_checkpoint_script_widens_m_with_the_adam_state(tmp_path):
    script = load_script("widen_checkpoint")
    model = trained_like(TINY)
    opt = torch.optim.Adam(trainable_parameters(model, "main"), lr=1e-3)
    x = torch.rand(1, 3, 64, 64)
    ((model(x, torch.tensor([1.0])).x_hat - x) ** 2).mean().backward()
    opt.step()
    ck = {"model": model.state_dict(), "opt": opt.state_dict(), "step": 3, "elapsed": 1.0,
          "model_config": dataclasses.asdict(TINY), "train_config": {}}
    torch.save(ck, tmp_path / "ck.pt")
    assert script.main([str(tmp_path / "ck.pt"), str(tmp_path / "out"), "--M", "32"]) == 0
    out = torch.load(tmp_path / "out" / "checkpoint.pt", weights_only=False)
    assert out["model_config"]["M"] == 32 and out["step"] == 3
    wide = AdapixModel(WIDE_M)
    wide.load_state_dict(out["model"])
    params = trainable_parameters(wide, "main")
    resumed = torch.optim.Adam(params, lr=1e-3)
    resumed.load_state_dict(out["opt"])
    i = [id(p) for p in params].index(id(wide.log_gain))
    assert torch.equal(resumed.state_dict()["state"][i]["exp_avg"][:, latent_index(TINY, WIDE_M)],
                       opt.state_dict()["state"][i]["exp_avg"])


def test_latent_usage_script_finds_the_new_channels_unused(m_widened, synth_image, tmp_path,
                                                           capsys):
    """scripts/latent_usage.py on a model just widened in M: the new channels are all 0."""
    script = load_script("latent_usage")
    _, wide = m_widened
    weights = tmp_path / "wide.safetensors"
    export_weights(wide, weights, "tiny-wide", fp16=False)
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(synth_image(64, 128)).save(images / "a.png")
    args = [str(images), "--weights", str(weights), "--positions", "2,5"]
    assert script.main(args + ["--old-M", "24"]) == 0
    rows = [line.split("\t")[1] for line in capsys.readouterr().out.splitlines()[1:]]
    assert len(rows) == 2
    for row in rows:
        old, new, psnr = row.split(" | ")
        assert new == "0.000 / 0.000" and float(old.split(" / ")[0]) > 0.1
        assert len(psnr.split(" / ")) == 3
    assert script.main(args + ["--old-M", "25"]) == 2
    assert "divisible" in capsys.readouterr().err
    assert script.main([str(tmp_path / "nothing")]) == 2


def test_new_sigma_widens_only_the_new_channels_prior(make_model):
    """widen_state(new_sigma=s): the new latent channels' sigma is s (the context nets' log-sigma
    bias), the old channels' prior and the reconstruction are unchanged, and the new (still
    zero) channels now cost bits; a sigma <= 0 is refused."""
    narrow = make_model(0)
    plain, wide = AdapixModel(WIDE_M), AdapixModel(WIDE_M)
    plain.load_state_dict(widen_state(narrow.state_dict(), TINY, plain))
    wide.load_state_dict(widen_state(narrow.state_dict(), TINY, wide, new_sigma=2.0))
    Mg, Mg_new = TINY.M // TINY.groups, WIDE_M.M // WIDE_M.groups
    for g, net in enumerate(wide.msp.coarse):
        bias = net.net[-1].bias.detach()
        old_bias = plain.msp.coarse[g].net[-1].bias.detach()
        assert torch.allclose(bias[Mg_new + Mg:], torch.full((Mg_new - Mg,), math.log(2.0)))
        assert torch.equal(bias[:Mg_new + Mg], old_bias[:Mg_new + Mg])
    x, t = torch.rand(1, 3, 64, 64), torch.tensor([3.0])
    plain.eval(), wide.eval()
    with torch.no_grad():
        a, b = plain(x, t), wide(x, t)
    assert torch.allclose(a.x_hat, b.x_hat, atol=1e-6)
    new_elements = (WIDE_M.M - TINY.M) * 64 * 64 // 256
    per_element = -math.log2(math.erf(0.5 / (2.0 * math.sqrt(2))))  # P(|n| < 1/2), n ~ N(0, 2)
    assert float(b.bits_y - a.bits_y) == pytest.approx(per_element * new_elements, rel=0.02)
    with pytest.raises(ValueError, match="new_sigma must be > 0"):
        widen_state(narrow.state_dict(), TINY, AdapixModel(WIDE_M), new_sigma=0.0)


def test_active_new_latent_channels_are_used_but_read_by_nothing_yet(make_model):
    """new_latent="active": the new channels are away from 0 (they round to non-zero values)
    while the reconstruction, z and the old channels are the source's; g_s's weights on them then
    get a gradient at once (with zero new channels they get none)."""
    narrow = make_model(0)
    wide = AdapixModel(WIDE_M)
    wide.load_state_dict(widen_state(narrow.state_dict(), TINY, wide, new_sigma=1.0,
                                     new_latent="active"))
    wide.eval()
    x, t = torch.rand(1, 3, 64, 64), torch.tensor([5.0])
    new = new_latent_mask(TINY, WIDE_M)
    with torch.no_grad():
        a, b = narrow(x, t), wide(x, t)
        lat = wide.analyse(x, t)
    assert torch.allclose(a.x_hat, b.x_hat, atol=1e-5)
    assert torch.allclose(a.bits_z, b.bits_z) and torch.allclose(a.bits_s, b.bits_s)
    assert torch.equal(lat.y[:, ~new], narrow.analyse(x, t).y)
    assert (lat.y[:, new].abs() >= 0.5).float().mean() > 0.2
    ys = lat.y[:, new].flatten(1).std(1)
    old = lat.y[:, ~new].flatten(1).std(1)
    assert 0.2 < float(ys.mean() / old.mean()) < 5  # the old channels' scale
    zero = AdapixModel(WIDE_M)
    zero.load_state_dict(widen_state(narrow.state_dict(), TINY, zero))
    for model, expect in ((wide, True), (zero, False)):
        model.train()
        model.zero_grad()
        out = model(x, t)
        (out.bits.mean() / 4096 + 0.16 * 255 ** 2 * ((out.x_hat - x) ** 2).mean()).backward()
        grad = model.g_s.body[0].weight.grad[new]
        assert bool(grad.abs().sum() > 0) == expect
    with pytest.raises(ValueError, match="new_latent must be"):
        widen_state(narrow.state_dict(), TINY, AdapixModel(WIDE_M), new_latent="copy")
