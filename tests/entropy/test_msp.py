"""Tests of the multi-scale progressive model (adapix.entropy.msp).

The training handler and the coding handler run through the same loop (``MSPModel.run``); these
tests check that the loop visits the positions of y in a consistent order (y_hat lands where y
was), that encoding and decoding agree, and that the model's bit estimates match real sizes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from adapix.config import TINY
from adapix.entropy.coder import StepDecoder, StepEncoder
from adapix.entropy.gaussian import SnappedGaussian
from adapix.entropy.fixedpoint import to_grid
from adapix.entropy.msp import MSPModel
from adapix.model import AdapixModel
from adapix.weights import build_tables

CFG = TINY


@pytest.fixture(scope="module")
def model() -> AdapixModel:
    torch.manual_seed(0)
    m = AdapixModel(CFG).eval()
    build_tables(m)
    return m


@pytest.fixture(scope="module")
def msp(model) -> MSPModel:
    return model.msp


@pytest.fixture(scope="module")
def snap(model) -> SnappedGaussian:
    return model.snap


@pytest.fixture(scope="module")
def fixed(model) -> dict:
    return model.fixed_nets()


def random_feats(h: int, w: int, seed: int) -> torch.Tensor:
    """Hyper features on the fixed-point grid, as ``AdapixModel.hyper_features`` produces."""
    g = torch.Generator().manual_seed(seed)
    return to_grid(torch.randn(1, 2 * CFG.M, h, w, generator=g))


def feats_and_y(h: int, w: int, seed: int, y_scale: float = 2.0):
    g = torch.Generator().manual_seed(seed + 1000)
    return random_feats(h, w, seed), torch.randn(1, CFG.M, h, w, generator=g) * y_scale


def model_sample(msp: MSPModel, feats: torch.Tensor, seed: int) -> torch.Tensor:
    """A latent drawn from the model's own conditionals (a fair test of the rate estimate)."""
    g = torch.Generator().manual_seed(seed)

    def handler(step, y_part, mu, sigma):
        return mu + sigma * torch.randn(mu.shape, generator=g)

    with torch.no_grad():
        return msp.run(feats.float(), None, handler)


def code(msp, snap, fixed, feats, y):
    enc = StepEncoder(snap.table)
    y_hat, est = msp.code(feats, y, enc, snap, fixed)
    data = enc.finish()
    dec = StepDecoder(snap.table, data)
    y_dec, est_dec = msp.code(feats, None, dec, snap, fixed)
    dec.finish()
    return y_hat, est, data, y_dec, est_dec


@pytest.mark.parametrize("scales,groups", [(3, 2), (2, 1), (4, 3)])
def test_steps_order_and_count(scales, groups):
    cfg = dataclasses.replace(CFG, scales=scales, groups=groups)
    torch.manual_seed(0)
    m = MSPModel(cfg).eval()
    seen = []

    def handler(step, y_part, mu, sigma):
        seen.append(step)
        assert y_part.shape == mu.shape == sigma.shape
        assert mu.shape[1] == cfg.M // cfg.groups
        return y_part

    s = 2 ** (scales - 1)
    h, w = 2 * s, 3 * s
    _, y = feats_and_y(h, w, 1)
    feats = torch.randn(1, 2 * cfg.M, h, w)
    with torch.no_grad():
        out = m.run(feats, y[:, : cfg.M], handler)
    assert seen == m.steps()
    assert len(seen) == m.decode_steps == cfg.groups * (1 + 3 * (cfg.scales - 1))
    # identity handler: the polyphase split and the interleave are inverses
    assert torch.equal(out, y[:, : cfg.M])


def test_phase_grids_cover_every_position_once(msp):
    """Each handler call sees a distinct set of positions; together they cover y exactly once."""
    h, w = 8, 12
    idx = torch.arange(CFG.M * h * w, dtype=torch.float32).view(1, CFG.M, h, w)
    seen = []

    def handler(step, y_part, mu, sigma):
        seen.append(y_part.flatten())
        return y_part

    with torch.no_grad():
        msp.run(torch.zeros(1, 2 * CFG.M, h, w), idx, handler)
    allpos = torch.cat(seen).long().sort().values
    assert torch.equal(allpos, torch.arange(CFG.M * h * w))


def test_coding_round_trip_and_reconstruction_error(msp, snap, fixed):
    feats, y = feats_and_y(16, 24, 2)
    y_hat, est, data, y_dec, est_dec = code(msp, snap, fixed, feats, y)
    assert torch.equal(y_hat, y_dec)
    assert est == est_dec > 0
    # y_hat = round(y - mu_s) + mu_s sits within half a step of y, at y's own position
    assert (y_hat - y).abs().max() <= 0.5 + 1e-5
    # mu_s lies on the mean grid, so y_hat - round(y_hat) is a multiple of mean_step
    frac = (y_hat / CFG.mean_step)
    assert torch.allclose(frac, torch.round(frac), atol=1e-3)


def test_coding_clamps_extreme_values(msp, snap, fixed):
    feats, y = feats_and_y(8, 8, 3)
    m = CFG.symbol_max
    y[0, 0, 0, 0] = 10 * m
    y[0, 5, 3, 2] = -10 * m
    y[0, 7, 7, 7] = m + 100
    y_hat, _, _, y_dec, _ = code(msp, snap, fixed, feats, y)
    assert torch.equal(y_hat, y_dec)
    big = y.abs() > m / 2
    assert (y_hat[~big] - y[~big]).abs().max() <= 0.5 + 1e-5
    assert (y_hat[big].abs() <= m + 64).all()  # |q| <= symbol_max, |mu_s| small
    assert (y_hat[big].sign() == y[big].sign()).all()


def test_training_and_coding_handlers_agree(msp, snap, fixed):
    """Training forward in eval mode (unsnapped mu) and the coding path give the same y_hat up
    to the mean snapping, position by position, and nearly the same bits."""
    feats = random_feats(12, 12, 4)
    y = model_sample(msp, feats, 5)
    with torch.no_grad():
        y_train, bits = msp(feats.float(), y)
    assert bits.shape == (1,) and torch.isfinite(bits).all()
    assert (y_train - y).abs().max() <= 0.5 + 1e-5
    y_hat, est, *_ = code(msp, snap, fixed, feats, y)
    diff = (y_train - y_hat).abs()
    # mu snapping moves y_hat by <= mean_step/2 (a bit more downstream, through the context);
    # rarely it flips a rounding decision: a difference of one whole step, never more
    assert (diff <= CFG.mean_step).float().mean() > 0.99
    assert (diff > 0.5).float().mean() < 0.01
    assert diff.max() <= 1 + CFG.mean_step
    assert abs(bits.item() - est) / est < 0.02


def test_training_mode_noise_and_gradient(msp):
    msp.train()
    try:
        feats, y = feats_and_y(8, 8, 6)
        y = y.requires_grad_()
        feats = feats.float().requires_grad_()
        y_hat, bits = msp(feats, y)
        assert torch.isfinite(bits).all() and bits.item() > 0
        assert (y_hat - y).abs().max() <= 0.5 + 1e-5
        bits.sum().backward()
        assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
        assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0
    finally:
        msp.eval()


def test_estimated_bits_match_real_size(msp, snap, fixed):
    feats = random_feats(24, 24, 7)
    y = model_sample(msp, feats, 107)
    _, est, data, _, _ = code(msp, snap, fixed, feats, y)
    real = 8 * len(data)
    assert abs(real - est) / est < 0.02, (real, est)


def test_decoding_needs_the_same_features(msp, snap, fixed):
    """Decoding with other hyper features must not crash with anything but FormatError (the
    symbols are then wrong: ANS cannot tell)."""
    from adapix.errors import FormatError

    feats, y = feats_and_y(8, 8, 9)
    enc = StepEncoder(snap.table)
    y_hat, _ = msp.code(feats, y, enc, snap, fixed)
    data = enc.finish()
    dec = StepDecoder(snap.table, data)
    try:
        y_other, _ = msp.code(feats + 1.0, None, dec, snap, fixed)
        dec.finish()
    except FormatError:
        return
    assert not torch.equal(y_other, y_hat)
    assert np.isfinite(y_other.numpy()).all()


def test_rate_weight_scales_each_channels_bits(msp):
    """forward's rate_weight (M,) multiplies each latent channel's bits: ones change nothing,
    zeros on one group remove exactly that group's share, and a wrong shape is refused."""
    feats, y = feats_and_y(8, 8, seed=7)
    Mg = CFG.M // CFG.groups

    def bits(weight):
        with torch.no_grad():
            return float(msp(feats.float(), y, rate_mode="ste", rate_weight=weight)[1])

    full = bits(None)
    assert full > 0
    assert bits(torch.ones(CFG.M)) == pytest.approx(full, rel=1e-6)
    assert bits(torch.full((CFG.M,), 0.25)) == pytest.approx(0.25 * full, rel=1e-5)
    first, rest = torch.zeros(CFG.M), torch.zeros(CFG.M)
    first[:Mg], rest[Mg:] = 1.0, 1.0
    assert 0 < bits(first) < full and 0 < bits(rest) < full
    assert bits(first) + bits(rest) == pytest.approx(full, rel=1e-5)
    with pytest.raises(ValueError, match="rate_weight must have shape"):
        bits(torch.ones(CFG.M + 1))
