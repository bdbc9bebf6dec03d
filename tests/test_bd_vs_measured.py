"""Tests of scripts/bd_vs_measured.py: BD-rate of one curve against others, and --params, which
keeps only some of the test curve's points."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import load_script


@pytest.fixture
def script():
    return load_script("bd_vs_measured")


def _write(path: Path, params, bpp, psnr) -> None:
    path.write_text(json.dumps({"name": path.stem, "results": {"bpp": bpp, "psnr-rgb": psnr},
                                "meta": {"params": params}}))


def test_params_keep_only_those_points(script, tmp_path, capsys):
    # the anchor: 0.5 dB below the test everywhere on the same rates
    bpp = [0.1, 0.2, 0.4, 0.8, 1.6]
    _write(tmp_path / "test.json", [5, 25, 50, 95, 100], bpp, [25.0, 27.0, 29.0, 31.0, 33.0])
    _write(tmp_path / "anchor.json", [1, 2, 3, 4, 5], bpp, [24.5, 26.5, 28.5, 30.5, 32.5])
    assert script.main([str(tmp_path), "test", "anchor"]) == 0
    full = capsys.readouterr().out
    assert "test: bpp 0.100 0.200 0.400 0.800 1.600" in full and "BD-PSNR +0.50 dB" in full
    assert script.main(["--params", "5,25,50,95", str(tmp_path), "test", "anchor"]) == 0
    part = capsys.readouterr().out
    assert "test: bpp 0.100 0.200 0.400 0.800\n" in part
    assert "dB at the test's rates: +0.50 +0.50 +0.50 +0.50\n" in part


def test_params_not_in_the_curve_is_a_clear_error(script, tmp_path, capsys):
    _write(tmp_path / "test.json", [5, 95], [0.1, 1.0], [25.0, 31.0])
    _write(tmp_path / "anchor.json", [5, 95], [0.1, 1.0], [24.0, 30.0])
    assert script.main(["--params", "5,100", str(tmp_path), "test", "anchor"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --params: no point at parameter(s) [100.0]")
