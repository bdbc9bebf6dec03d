"""Tests of the factorized prior (adapix.entropy.factorized): tables and exact coding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adapix.entropy.factorized import FactorizedPrior, round_ste
from adapix.errors import FormatError, WeightsError


@pytest.fixture
def prior() -> FactorizedPrior:
    torch.manual_seed(0)
    p = FactorizedPrior(6)
    with torch.no_grad():  # channels of different widths and centres
        for c in range(6):
            p.matrices[0][c].add_(0.4 * c - 1.0)
            p.biases[-1][c].add_(0.7 * (c - 3))
    p.eval()
    p.table = p.build_table()
    return p


def test_table_pmfs_are_normalised(prior):
    t = prior.table
    assert t.pmf.dtype == np.float64 and t.pmf.shape == (6, t.length)
    assert t.offset.shape == (6,)
    assert (t.pmf > 0).all()
    np.testing.assert_allclose(t.pmf.sum(axis=1), 1.0, atol=1e-4)
    # the table holds the bulk of every channel's mass: the mode is inside, not at the edges
    mode = t.pmf.argmax(axis=1)
    assert ((mode > 0) & (mode < t.length - 1)).all()


def test_table_matches_the_density(prior):
    """pmf[c, i] is P(offset[c] + i) of channel c."""
    t = prior.table
    ks = np.array([-3, 0, 2, 7])
    x = torch.tensor(ks, dtype=torch.float32).view(1, 1, -1).expand(1, 6, -1).contiguous()
    with torch.no_grad():
        p = prior.likelihood(x)[0].double().numpy()  # (6, 4)
    for c in range(6):
        idx = ks - t.offset[c]
        np.testing.assert_allclose(t.pmf[c, idx], p[c], rtol=1e-4, atol=1e-12)


def test_build_table_trims_the_tails():
    """build_table must keep only the range holding all but ``tail`` (1e-10) of the mass.

    Fails (src bug): ``likelihood`` floors every bin at 1e-9 > tail, so the cumulative mass never
    stays below 1e-10 nor reaches 1 - 1e-10, and every table spans the whole search range
    (2 * 1024 + 1 entries) although this prior has ~460 integers with more than 1e-10 of mass.
    """
    torch.manual_seed(0)
    p = FactorizedPrior(4)
    t = p.build_table()
    assert t.length < 2 * 1024 + 1, f"table not trimmed: {t.length} entries"


def test_compress_decompress_exact(prior):
    torch.manual_seed(1)
    x = torch.randn(2, 6, 5, 7) * 4 + torch.arange(6).view(1, 6, 1, 1)
    data, x_hat = prior.compress(x)
    assert isinstance(data, bytes)
    assert torch.equal(x_hat, torch.round(x))
    dec = prior.decompress(data, tuple(x.shape))
    assert torch.equal(dec, x_hat)
    assert dec.dtype == torch.float32


@pytest.mark.parametrize("shape", [(1, 6, 1), (1, 6, 3, 1), (3, 6, 2, 2)])
def test_compress_shapes(prior, shape):
    torch.manual_seed(2)
    x = torch.randn(shape) * 3
    data, x_hat = prior.compress(x)
    assert torch.equal(prior.decompress(data, shape), x_hat)


def test_out_of_range_values_are_clamped(prior):
    t = prior.table
    lo = torch.tensor(t.offset, dtype=torch.float32).view(1, 6, 1)
    hi = lo + t.length - 1
    x = torch.cat([lo - 5000, lo - 1, lo, hi, hi + 1, hi + 1e6, torch.zeros(1, 6, 1)], dim=2)
    data, x_hat = prior.compress(x)
    expected = torch.maximum(torch.minimum(torch.round(x), hi), lo)
    assert torch.equal(x_hat, expected)
    assert torch.equal(prior.decompress(data, tuple(x.shape)), x_hat)


def test_estimate_bits_close_to_real_size(prior):
    torch.manual_seed(3)
    # values drawn near the modes: a fair sample of the prior
    modes = torch.tensor(prior.table.offset + prior.table.pmf.argmax(1), dtype=torch.float32)
    x = modes.view(1, 6, 1, 1) + torch.randn(1, 6, 40, 40) * 3
    data, x_hat = prior.compress(x)
    est = prior.estimate_bits(x_hat)
    assert est > 0
    assert abs(8 * len(data) - est) / est < 0.02


def test_training_forward_and_round_ste(prior):
    prior.train()
    x = torch.randn(2, 6, 4, 4, requires_grad=True)
    x_tilde, bits = prior(x)
    assert x_tilde.shape == x.shape and bits.shape == (2,)
    assert torch.isfinite(bits).all() and (bits > 0).all()
    assert (x_tilde - x).abs().max() <= 0.5
    bits.sum().backward()
    assert x.grad is not None
    r = round_ste(x)
    assert torch.equal(r, torch.round(x))
    prior.eval()
    x_r, _ = prior(x)
    assert torch.equal(x_r, torch.round(x))


def test_without_table_raises_weights_error():
    p = FactorizedPrior(2)
    with pytest.raises(WeightsError):
        p.compress(torch.zeros(1, 2, 1))
    with pytest.raises(WeightsError):
        p.decompress(b"", (1, 2, 1))


@pytest.mark.parametrize("mutate", ["truncate1", "truncate4", "append", "garbage", "empty"])
def test_corrupt_stream_raises_format_error_only(prior, mutate):
    torch.manual_seed(4)
    x = torch.randn(1, 6, 8, 8) * 3
    data, x_hat = prior.compress(x)
    bad = {"truncate1": data[:-1], "truncate4": data[:-4], "append": data + b"\x07\x00\x00\x00",
           "garbage": bytes(np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8)),
           "empty": b""}[mutate]
    try:
        dec = prior.decompress(bad, tuple(x.shape))
    except FormatError:
        return
    # ANS cannot always detect damage; if it decodes, it decodes the right number of values
    assert dec.shape == x.shape


def test_coding_memory_does_not_scale_with_symbols_times_table_length(prior):
    """Fails (src bug): compress/decompress build ``t.pmf[chan]``, a float64 (symbols x table
    length) array, and the coder copied it again (``astype(np.float64)``).
    With the untrimmed 2049-entry tables that is 2 x 16 KiB per symbol: 537 MB for the z of a
    2048x2048 image with TINY (Nh=16), several GB for the shipped model at 4K. Coding per
    channel with one categorical model each needs O(symbols + channels x length)."""
    import tracemalloc

    x = torch.randn(1, 6, 16, 32) * 3  # 3072 symbols
    tracemalloc.start()
    try:
        data, x_hat = prior.compress(x)
        enc_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        prior.decompress(data, tuple(x.shape))
        dec_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert max(enc_peak, dec_peak) < 8 * 2 ** 20, (enc_peak, dec_peak)
