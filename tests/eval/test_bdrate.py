from __future__ import annotations

import math

import numpy as np
import pytest

from adapix.eval.bdrate import bd_psnr, bd_rate, bd_table, clean_curve
from adapix.eval.results import Curve

RATE = [0.1, 0.2, 0.4, 0.8, 1.6]
PSNR = [27.0, 29.5, 32.0, 34.8, 37.9]


def test_self_is_zero():
    r = bd_rate(RATE, PSNR, RATE, PSNR)
    assert r.ok and abs(r.value) < 1e-9
    assert r.overlap == pytest.approx(1.0)
    p = bd_psnr(RATE, PSNR, RATE, PSNR)
    assert p.ok and abs(p.value) < 1e-9


def test_ten_percent_fewer_bits():
    r = bd_rate(RATE, PSNR, [0.9 * x for x in RATE], PSNR)
    assert r.ok and r.value == pytest.approx(-10.0, abs=1e-6)
    r = bd_rate(RATE, PSNR, [1.1 * x for x in RATE], PSNR)
    assert r.value == pytest.approx(10.0, abs=1e-6)


def test_bd_psnr_of_a_shifted_curve():
    p = bd_psnr(RATE, PSNR, RATE, [x + 0.5 for x in PSNR])
    assert p.ok and p.value == pytest.approx(0.5, abs=1e-6)


def test_partial_overlap_uses_the_overlap_only():
    # the test curve covers only the upper part of the anchor; same curve shape there
    # (akima through 3 points differs a little from akima through 5 on the same interval)
    r = bd_rate(RATE, PSNR, RATE[2:], PSNR[2:])
    assert r.ok and abs(r.value) < 1.0
    assert 0 < r.overlap < 1


def test_no_overlap_is_nan_with_reason():
    r = bd_rate(RATE, PSNR, [2, 3, 4], [40, 41, 42])
    assert not r.ok and math.isnan(r.value)
    assert "overlap" in r.reason
    p = bd_psnr(RATE, PSNR, [3, 4, 5], [30, 31, 32])
    assert not p.ok and "overlap" in p.reason


def test_too_few_points():
    r = bd_rate(RATE, PSNR, [0.5], [33.0])
    assert not r.ok and "point" in r.reason


def test_non_monotonic_curve_is_cleaned():
    # quality saturates and dips at the top, points come unsorted, one point is nan
    rate = [0.8, 0.1, 0.2, 1.6, 0.4, 3.2, 5.0]
    q = [34.8, 27.0, 29.5, 34.5, 32.0, float("nan"), 34.9]
    r, qq, dropped = clean_curve(rate, q)
    assert list(r) == [0.1, 0.2, 0.4, 0.8, 5.0]
    assert np.all(np.diff(qq) > 0)
    assert dropped == 2
    res = bd_rate(RATE, PSNR, rate, q)
    assert res.ok and res.dropped == 2


def test_equal_rates_keep_the_best():
    r, q, _ = clean_curve([0.1, 0.1, 0.2], [26.0, 27.0, 28.0])
    assert list(r) == [0.1, 0.2] and list(q) == [27.0, 28.0]


def test_table():
    anchor = Curve("anchor", bpp=RATE, psnr=PSNR, source="reference")
    better = Curve("better", bpp=[0.9 * x for x in RATE], psnr=PSNR, ms_ssim=[0.9, 0.93, 0.96, 0.98, 0.99], n_images=2)
    far = Curve("far", bpp=[2, 3, 4], psnr=[40, 41, 42], n_images=2)
    md = bd_table([better, far, anchor], anchor, title="t")
    lines = md.splitlines()
    assert lines[0] == "# t"
    row = next(line for line in lines if line.startswith("| better"))
    assert "-10.00%" in row
    assert any(line.startswith("| far") and "n/a" in line for line in lines)
    assert any("far: BD-rate (PSNR) n/a" in line for line in lines)
    assert any(line.startswith("| **anchor** (anchor)") and "+0.00%" in line for line in lines)
    # measured rows first
    order = [line.split("|")[1].strip() for line in lines if line.startswith("| ") and "---" not in line][1:]
    assert order.index("better") < order.index("**anchor** (anchor)")
