"""Tests of adapix.widen: a model widened from N to N' > N computes the same function and can
learn with its new channels."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from adapix.config import TINY
from adapix.model import AdapixModel
from adapix.widen import widen_adam_state, widen_state


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


def test_only_a_growing_n_is_accepted():
    narrow = trained_like(TINY)
    with pytest.raises(ValueError, match="N to grow"):
        widen_state(narrow.state_dict(), TINY, AdapixModel(dataclasses.replace(TINY, N=8)))
    with pytest.raises(ValueError, match="differ in M"):
        widen_state(narrow.state_dict(), TINY,
                    AdapixModel(dataclasses.replace(TINY, N=24, M=32)))


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
