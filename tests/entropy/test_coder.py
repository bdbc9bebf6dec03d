"""Tests of adapix.entropy.coder: categorical coding and the step-wise Gaussian coder.

ANS (constriction) has no end marker, so some damage decodes to wrong symbols without an error
(the ``.apx`` CRC catches it at the container level). What the coder guarantees, and what is
tested here: exact round trips, FormatError for the damage it can see, and never any other
exception type (in particular no Rust panic or ValueError escapes).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapix.config import TINY
from adapix.entropy.coder import (GaussianTable, StepDecoder, StepEncoder, decode_per_channel,
                                  encode_per_channel)
from adapix.entropy.gaussian import SnappedGaussian, scale_table
from adapix.errors import FormatError


@pytest.fixture(scope="module")
def table() -> GaussianTable:
    return SnappedGaussian(TINY).table


def random_steps(table: GaussianTable, seed: int, n_steps: int = 6, max_n: int = 700):
    """Random (symbols, scale index) per step, symbols drawn from the indexed Gaussians, with a few
    extreme symbols and some empty steps."""
    rng = np.random.default_rng(seed)
    steps = []
    for i in range(n_steps):
        n = 0 if i == 2 else int(rng.integers(1, max_n))
        idx = rng.integers(0, len(table.stds), n)
        sym = np.round(rng.normal(0.0, table.stds[idx]))
        if n > 3:
            sym[:3] = [-table.symbol_max, table.symbol_max - 1, 0]
        sym = np.clip(sym, -table.symbol_max, table.symbol_max - 1).astype(np.int32)
        steps.append((sym, idx))
    return steps


def encode_steps(table, steps) -> bytes:
    enc = StepEncoder(table)
    for sym, idx in steps:
        returned = enc.code(sym, idx)
        assert np.array_equal(returned, sym)  # the encoder hands the symbols back
    return enc.finish()


def decode_steps(table, data, steps):
    dec = StepDecoder(table, data)
    out = [dec.code(None, idx) for _, idx in steps]
    dec.finish()
    return out


def test_scale_table(table):
    s = scale_table(TINY)
    assert len(s) == TINY.scale_levels
    assert s[0] == pytest.approx(TINY.scale_min) and s[-1] == pytest.approx(TINY.scale_max)
    assert (np.diff(np.log(s)) > 0).all()
    assert np.array_equal(table.stds, s)


@pytest.mark.parametrize("seed", range(4))
def test_step_round_trip(table, seed):
    steps = random_steps(table, seed)
    data = encode_steps(table, steps)
    assert len(data) % 4 == 0
    for (sym, _), got in zip(steps, decode_steps(table, data, steps)):
        assert got.dtype == np.int32
        assert np.array_equal(got, sym)


def test_empty_stream_round_trip(table):
    steps = [(np.zeros(0, np.int32), np.zeros(0, np.int64))] * 3
    data = encode_steps(table, steps)
    assert all(g.size == 0 for g in decode_steps(table, data, steps))


def test_steps_decode_in_encoding_order(table):
    """Step k needs step k's scale indices: decoding with the steps' indices permuted fails or
    gives other symbols (the stream is ordered)."""
    steps = random_steps(table, 7, n_steps=3, max_n=300)
    steps = [s for s in steps if s[0].size] * 2
    data = encode_steps(table, steps)
    swapped = [steps[1], steps[0]] + steps[2:]
    try:
        got = decode_steps(table, data, swapped)
    except FormatError:
        return
    assert not all(np.array_equal(g, s[0]) for g, s in zip(got, swapped))


@pytest.mark.parametrize("mutate", ["odd_length", "drop_top_word", "append_word"])
def test_detectable_damage_raises_format_error(table, mutate):
    steps = random_steps(table, 11)
    data = encode_steps(table, steps)
    bad = {"odd_length": data[:-1], "drop_top_word": data[:-4],
           "append_word": data + b"\x01\x02\x03\x04"}[mutate]
    with pytest.raises(FormatError):
        decode_steps(table, bad, steps)


def test_garbage_and_truncation_raise_only_format_error(table):
    steps = random_steps(table, 12)
    data = encode_steps(table, steps)
    rng = np.random.default_rng(0)
    candidates = [b"", data[4:], data[: len(data) // 2 // 4 * 4], data[:4], b"\x00" * 8,
                  b"\xff" * 12, b"\x00\x00\x00\x00\x01\x00\x00\x00"]
    candidates += [rng.integers(0, 256, 4 * int(rng.integers(0, 200)), dtype=np.uint8).tobytes()
                   for _ in range(60)]
    candidates += [rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8).tobytes()
                   for _ in range(20)]
    errors = 0
    for bad in candidates:
        try:
            got = decode_steps(table, bad, steps)
        except FormatError:
            errors += 1
            continue
        assert [g.shape for g in got] == [s[0].shape for s in steps]
    assert errors > 0


@pytest.mark.parametrize("seed", range(3))
def test_per_channel_round_trip(seed):
    rng = np.random.default_rng(seed)
    C, n, L = int(rng.integers(1, 6)), int(rng.integers(1, 400)), int(rng.integers(2, 40))
    pmf = np.maximum(rng.dirichlet(np.full(L, 0.5), C), 1e-12)
    sym = np.stack([rng.choice(L, n, p=p / p.sum()) for p in pmf]).astype(np.int32)
    data = encode_per_channel(sym, pmf)
    assert np.array_equal(decode_per_channel(data, pmf, n), sym)


def test_per_channel_empty():
    pmf = np.full((3, 5), 0.2)
    data = encode_per_channel(np.zeros((3, 0), np.int32), pmf)
    assert decode_per_channel(data, pmf, 0).shape == (3, 0)


def test_per_channel_damage_raises_only_format_error():
    rng = np.random.default_rng(5)
    pmf = rng.dirichlet(np.ones(10), 4)
    sym = np.stack([rng.choice(10, 20, p=p) for p in pmf]).astype(np.int32)
    data = encode_per_channel(sym, pmf)
    with pytest.raises(FormatError):
        decode_per_channel(data[:-1], pmf, 20)
    with pytest.raises(FormatError):
        decode_per_channel(data + b"\x05\x00\x00\x00", pmf, 20)
    for _ in range(60):
        bad = rng.integers(0, 256, int(rng.integers(0, 90)), dtype=np.uint8).tobytes()
        try:
            out = decode_per_channel(bad, pmf, 20)
        except FormatError:
            continue
        assert out.shape == (4, 20)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.tuples(st.integers(-TINY.symbol_max, TINY.symbol_max - 1),
                                   st.integers(0, TINY.scale_levels - 1)), max_size=40),
                min_size=1, max_size=6))
def test_step_round_trip_property(steps_list):
    """Any symbols in range, with any scale indices, in any number of steps, round-trip."""
    table = SnappedGaussian(TINY).table
    steps = [(np.array([s for s, _ in st_], dtype=np.int32).reshape(-1),
              np.array([i for _, i in st_], dtype=np.int64).reshape(-1)) for st_ in steps_list]
    data = encode_steps(table, steps)
    for (sym, _), got in zip(steps, decode_steps(table, data, steps)):
        assert np.array_equal(got, sym)
