from __future__ import annotations

import csv
import json
import math

import pytest

from adapix.eval.results import (
    Curve,
    Measurement,
    aggregate,
    append_jsonl,
    load_reference_curves,
    read_curve_json,
    read_jsonl,
    write_curve_json,
    write_per_image_csv,
)


def _m(param, image, bpp, psnr, ms=math.nan, codec="c"):
    return Measurement(codec, param, image, bpp, psnr, ms, 0.01, 0.02, 8, 8, 8)


def test_aggregate_means_sorted_and_complete_only():
    ms = [
        _m(50, "a", 1.0, 30.0), _m(50, "b", 2.0, 32.0),
        _m(10, "a", 0.2, 25.0), _m(10, "b", 0.4, 27.0),
        _m(90, "a", 3.0, 40.0),  # b missing -> dropped
    ]
    curve, warn = aggregate(ms, "c", "desc", params=[90, 50, 10], images=["a", "b"])
    assert curve.bpp == pytest.approx([0.3, 1.5])
    assert curve.psnr == pytest.approx([26.0, 31.0])
    assert curve.params == [10, 50]
    assert curve.encoding_time == pytest.approx([0.01, 0.01])
    assert curve.n_images == 2
    assert len(warn) == 1 and "90" in warn[0]


def test_json_round_trip(tmp_path):
    c = Curve("x", "d", bpp=[0.1, 0.5], psnr=[28.0, 33.0], ms_ssim=[0.9, math.nan],
              encoding_time=[0.1, 0.2], decoding_time=[0.01, 0.02], params=[1, 2], n_images=3)
    path = write_curve_json(c, tmp_path / "x.json")
    d = json.loads(path.read_text())
    assert set(d["results"]) == {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"}
    assert d["results"]["ms-ssim-rgb"][1] is None  # nan -> null (standard JSON)
    back = read_curve_json(path, source="measured")
    assert back.bpp == c.bpp and back.psnr == c.psnr and back.params == [1, 2] and back.n_images == 3
    assert math.isnan(back.ms_ssim[1])


def test_reference_loading_is_tolerant(tmp_path):
    (tmp_path / "full.json").write_text(json.dumps({
        "name": "Full", "description": "x",
        "results": {"bpp": [0.1, 0.2], "psnr-rgb": [28, 30], "ms-ssim-rgb": [0.9, 0.95],
                    "encoding_time": [1, 2], "decoding_time": [1, 2]}}))
    (tmp_path / "paper.json").write_text(json.dumps({
        "name": "Paper", "description": "digitised", "meta": {"source": "paper", "device": None},
        "results": {"bpp": [0.1, 0.2], "psnr-rgb": [28, 30], "ms-ssim-db-rgb": [10.0, 20.0]}}))
    (tmp_path / "psnr_only.json").write_text(json.dumps({"name": "P", "results": {"bpp": [0.1], "psnr-rgb": [28]}}))
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "nobpp.json").write_text(json.dumps({"name": "N", "results": {"psnr-rgb": [28]}}))
    curves, warn = load_reference_curves(tmp_path)
    assert set(curves) == {"full", "paper", "psnr_only"}
    assert curves["paper"].ms_ssim == pytest.approx([0.9, 0.99])
    assert curves["psnr_only"].ms_ssim == [] and curves["psnr_only"].encoding_time == []
    assert curves["full"].source == "reference" and curves["full"].label == "full"
    assert len(warn) == 2
    assert load_reference_curves(tmp_path / "missing")[0] == {}


def test_csv_and_jsonl(tmp_path):
    ms = [_m(10, "a", 0.2, 25.0, 0.9), _m(10, "b", 0.4, math.inf)]
    path = write_per_image_csv(ms, tmp_path / "p.csv")
    rows = list(csv.DictReader(path.open()))
    assert [r["image"] for r in rows] == ["a", "b"]
    assert rows[0]["param"] == "10" and float(rows[0]["bpp"]) == pytest.approx(0.2)
    append_jsonl(tmp_path / "c.jsonl", [m.to_dict() for m in ms])
    with (tmp_path / "c.jsonl").open("a") as f:
        f.write('{"truncated": ')  # an interrupted write
    recs = read_jsonl(tmp_path / "c.jsonl")
    assert len(recs) == 2
    back = [Measurement.from_dict(r) for r in recs]
    assert back[0].ms_ssim == pytest.approx(0.9)
    assert back[1].psnr == math.inf and math.isnan(back[1].ms_ssim)
