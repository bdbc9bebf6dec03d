"""Tests of adapix.bench and ``adapix bench`` with a tiny random model at tiny sizes.

Timings are only checked to be positive (the machine may be busy); the mbt2018 reference runs
only when CompressAI is importable (``pip install --no-deps compressai==1.2.8`` plus the
``bench`` extra)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from adapix import bench
from adapix.bench import (BenchConfig, SpeedResult, bench_adapix, bench_synthesis,
                          compute_ratios, format_table, image_from_file, parse_size, parse_sizes,
                          run_bench, synthetic_photo)
from adapix.cli.bench import main as bench_main
from adapix.config import TINY
from adapix.container import peek_header
from adapix.model import AdapixModel
from adapix.weights import build_tables, export_weights

SIZE = (128, 96)


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory):
    torch.manual_seed(0)
    model = AdapixModel(TINY).eval()
    build_tables(model)
    path = tmp_path_factory.mktemp("bench") / "tiny.safetensors"
    export_weights(model, path, "tiny-bench", fp16=False)
    return path


@pytest.fixture(scope="module")
def codec(tiny_model_file):
    from adapix.codec import Codec

    return Codec(tiny_model_file)


# ---- helpers -----------------------------------------------------------------------------------

def test_parse_sizes():
    assert parse_size("768x512") == (768, 512)
    assert parse_size(" 64X48 ") == (64, 48)
    assert parse_sizes("768x512,1920x1080") == ((768, 512), (1920, 1080))
    assert parse_sizes("64x64,32x16,64x64,") == ((64, 64), (32, 16))
    for bad in ("64x", "x64", "64", "0x10", "axb", "64x64x3", "-5x5", ""):
        with pytest.raises(ValueError):
            parse_sizes(bad)


def test_synthetic_photo_is_deterministic_and_photo_like():
    a = synthetic_photo(96, 64, seed=3)
    assert a.shape == (64, 96, 3) and a.dtype == np.uint8
    assert np.array_equal(a, synthetic_photo(96, 64, seed=3))
    assert not np.array_equal(a, synthetic_photo(96, 64, seed=4))
    assert a.std() > 20  # shapes and colours, not a flat field
    assert np.abs(np.diff(a.astype(int), axis=1)).mean() > 1  # texture and noise
    assert synthetic_photo(1, 1).shape == (1, 1, 3)


def test_image_from_file_tiles_and_crops(tmp_path):
    src = np.random.default_rng(0).integers(0, 256, (7, 10, 3), dtype=np.uint8)
    Image.fromarray(src).save(tmp_path / "p.png")
    big = image_from_file(tmp_path / "p.png", 25, 16)
    assert big.shape == (16, 25, 3)
    assert np.array_equal(big[:7, :10], src)
    assert np.array_equal(big[7:14, :10], src[::-1])  # mirrored, no seams
    assert np.array_equal(image_from_file(tmp_path / "p.png", 4, 3), src[:3, :4])


# ---- measurements ------------------------------------------------------------------------------

def test_bench_adapix_and_synthesis(codec):
    w, h = SIZE
    pixels = synthetic_photo(w, h)
    with bench.torch_threads(1):
        row, data = bench_adapix(codec, pixels, "fast", runs=1)
        syn = bench_synthesis(codec.model, w, h, runs=1)
    assert (row.name, row.width, row.height, row.runs) == ("adapix:fast", w, h, 1)
    assert row.encode_s > 0 and row.decode_s > 0
    assert row.kmac_per_pixel > 0 and row.bytes == len(data) > 0
    assert codec.decode_ex(data).image.pixels.shape == (h, w, 3)
    assert syn.name == "adapix:synthesis" and syn.encode_s is None and syn.decode_s > 0
    # the synthesis transform is part of the decoder
    assert 0 < syn.kmac_per_pixel < row.kmac_per_pixel


def test_kmac_count_matches_a_hand_count():
    conv = torch.nn.Conv2d(4, 8, 3, padding=1)
    x = torch.rand(1, 4, 10, 10)
    # 8 outputs x 4 inputs x 9 taps per pixel = 288 MAC/px = 0.288 kMAC/px
    assert bench.count_kmac_per_pixel(lambda: conv(x), 100) == pytest.approx(0.288)


def test_peak_memory_in_a_fresh_process(tiny_model_file):
    # a parent much larger than the child: ru_maxrss of the child would start at the parent's
    # peak (inherited at exec) and hide the child's own peak; the measurement must not
    ballast = np.ones(400 * 2**20 // 8)
    mb = bench.measure_peak_memory({"kind": "adapix-synthesis", "threads": 1,
                                    "model": str(tiny_model_file), "width": 256, "height": 256,
                                    "seed": 0})
    del ballast
    # g_s of TINY at 256x256: 16-channel float maps of 1 MB (64x64) to 4 MB (128x128) and more
    assert 2 < mb < 500


def test_format_table_has_both_ratios():
    rows = [SpeedResult("adapix:fast", 128, 96, 0.2, 0.1, 1, 12.0, 5.5, 11.0, 12.0),
            SpeedResult("adapix:synthesis", 128, 96, None, 0.04, 1, None, 4.0),
            SpeedResult("mbt2018:q6", 128, 96, 2.0, 3.0, 1, 80.0, 140.0)]
    (r,) = compute_ratios(rows)
    assert r.adapix_over_synthesis == pytest.approx(2.5)
    assert r.mbt_over_adapix == pytest.approx(30.0)
    text = format_table(rows)
    assert "| adapix:fast | 128x96 |" in text
    assert "Adapix decode (fast) / synthesis only = 2.50x" in text
    assert "mbt2018 decode / Adapix decode (fast) = 30.0x" in text
    # without mbt2018 the second ratio is there, with the reason it has no value
    text = format_table(rows[:2])
    assert "synthesis only = 2.50x" in text
    assert "mbt2018 decode / Adapix decode (fast) = n/a" in text


def test_run_bench_report_and_json(tiny_model_file, tmp_path):
    cfg = BenchConfig(sizes=((64, 64),), runs=1, threads=1, profiles=("fast",),
                      model=str(tiny_model_file), mbt=False, memory=False)
    report = run_bench(cfg, progress=False)
    assert [r.name for r in report.results] == ["adapix:fast", "adapix:synthesis"]
    assert report.skipped == []
    assert report.ratios[0].adapix_over_synthesis > 0
    path = bench.write_json(report, tmp_path / "b.json")
    data = json.loads(path.read_text())
    assert data["results"][0]["name"] == "adapix:fast"
    assert data["environment"]["model_id"] == "tiny-bench"
    assert data["config"]["profiles"] == ["fast"]


def test_run_bench_bf16_rows_and_ratios(tiny_model_file):
    cfg = BenchConfig(sizes=((64, 64),), runs=1, threads=1, profiles=("fast",),
                      model=str(tiny_model_file), mbt=False, memory=False, bf16=True)
    report = run_bench(cfg, progress=False)
    assert [r.name for r in report.results] == ["adapix:fast+bf16", "adapix:synthesis+bf16"]
    (ratio,) = report.ratios
    assert ratio.profile == "fast+bf16" and ratio.adapix_over_synthesis > 0
    assert "Adapix decode (fast+bf16) / synthesis only" in format_table(report.results)


def test_bench_adapix_bf16_codes_a_bf16_file(codec):
    with bench.torch_threads(1):
        row, data = bench_adapix(codec, synthetic_photo(*SIZE), "fast", runs=1, bf16=True)
    assert row.name == "adapix:fast+bf16" and peek_header(data).bf16


# ---- CLI ---------------------------------------------------------------------------------------

def test_cli_runs_and_writes(tiny_model_file, tmp_path, capsys):
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    rc = bench_main(["--no-mbt", "--sizes", "64x64", "--runs", "1", "--model",
                     str(tiny_model_file), "--profiles", "fast", "--threads", "1",
                     "--out", str(out), "--markdown", str(md), "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "| adapix:fast | 64x64 |" in printed and "synthesis only =" in printed
    assert "mbt2018 decode / Adapix decode (fast) = n/a" in printed
    results = json.loads(out.read_text())["results"]
    fast = results[0]
    assert fast["encode_s"] > 0 and fast["decode_s"] > 0 and fast["kmac_per_pixel"] > 0
    assert fast["decode_mem_mb"] is not None and fast["peak_mem_mb"] >= 0  # subprocesses ran
    assert "synthesis only" in md.read_text()


@pytest.mark.parametrize("args", [["--sizes", "64x"], ["--sizes", "0x64"], ["--runs", "0"],
                                  ["--mbt-runs", "-1"], ["--mbt-quality", "9"],
                                  ["--profiles", "nope"], ["--threads", "x"], ["--bogus"],
                                  ["--model", "/nonexistent/w.safetensors"]])
def test_cli_bad_arguments_return_2(args, capsys):
    assert bench_main(args + ["--no-mbt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("adapix bench: error:") and "\n" not in err


def test_cli_help(capsys):
    assert bench_main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "--no-mbt" in text and "pip install --no-deps compressai==1.2.8" in text


# ---- mbt2018 (CompressAI) ----------------------------------------------------------------------

def test_compressai_stubs_do_not_leak():
    compressai, reason = bench.import_compressai()
    if compressai is None:
        pytest.skip(reason)
    for name in ("torchvision", "torch_geometric", "pandas", "requests"):
        mod = sys.modules.get(name)
        assert mod is None or not getattr(mod, "__adapix_stub__", False)


def test_mbt2018_row():
    compressai, reason = bench.import_compressai()
    if compressai is None:
        pytest.skip(reason)
    pixels = synthetic_photo(64, 48)  # padded to 64x64 for mbt2018: a 4x4 latent
    with bench.torch_threads(1):
        row, out = bench.bench_mbt2018(pixels, runs=1)
    assert (row.name, row.width, row.height) == ("mbt2018:q6", 64, 48)
    assert row.encode_s > 0 and row.decode_s > 0 and row.bytes > 0
    assert row.kmac_per_pixel > 50  # N=192, M=320 decoder: ~100 kMAC/px
    assert list(out["shape"]) == [1, 1]
    rows = [row, SpeedResult("adapix:fast", 64, 48, 0.1, 0.05, 1)]
    assert compute_ratios(rows)[0].mbt_over_adapix == pytest.approx(row.decode_s / 0.05)


@pytest.mark.parametrize("how", ["not installed", "broken"])
def test_mbt2018_skipped_with_a_reason(tiny_model_file, monkeypatch, how):
    import importlib.util

    monkeypatch.setattr(bench, "_COMPRESSAI", None)
    if how == "not installed":
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: None if name == "compressai" else real(name, *a))
        monkeypatch.delitem(sys.modules, "compressai", raising=False)
    else:
        monkeypatch.setitem(sys.modules, "compressai", None)  # import raises ImportError
    cfg = BenchConfig(sizes=((64, 64),), runs=1, threads=1, model=str(tiny_model_file),
                      mbt=True, memory=False, complexity=False)
    report = run_bench(cfg, progress=False)
    assert [r.name for r in report.results] == ["adapix:fast", "adapix:synthesis"]
    (reason,) = report.skipped
    assert reason.startswith("mbt2018: compressai") and "\n" not in reason
    assert ("not installed" in reason) == (how == "not installed")
    text = format_table(report.results, report.skipped)
    assert "mbt2018 decode / Adapix decode (fast) = n/a" in text and reason in text
