"""run_eval end to end on two tiny images: outputs, cache/resume, skips, failures, workers."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from adapix.eval import codecs as C
from adapix.eval.runner import resolve_anchor, run_eval


class TwoParams(C.Codec):
    """Wrap a real codec with a 2-point sweep."""

    def __init__(self, inner: C.Codec, params: list):
        self.inner = inner
        self.name = inner.name
        self.description = inner.description
        self._params = params

    def available(self):
        return self.inner.available()

    def params(self):
        return list(self._params)

    def encode(self, rgb, param):
        return self.inner.encode(rgb, param)

    def decode(self, data):
        return self.inner.decode(data)

    def fingerprint(self, param=None):
        return self.inner.fingerprint(param) + f"|{self._params}"


class Unavailable(C.Codec):
    name = "ghost"
    description = "never available"

    def available(self):
        return "libghost is not installed"

    def params(self):
        return [1, 2]


class Broken(C.Codec):
    name = "broken"
    description = "always fails"

    def params(self):
        return [1, 2]

    def encode(self, rgb, param):
        raise RuntimeError("encoder exploded")


class WrongSize(Broken):
    name = "wrongsize"

    def encode(self, rgb, param):
        return b"x"

    def decode(self, data):
        return np.zeros((2, 2, 3), np.uint8)


@pytest.fixture
def small_registry(monkeypatch):
    monkeypatch.setitem(C.CODECS, "jpeg444", lambda: TwoParams(C.PillowJPEG("4:4:4"), [20, 80]))
    monkeypatch.setitem(C.CODECS, "webp", lambda: TwoParams(C.PillowWebP(), [20, 80]))
    monkeypatch.setitem(C.CODECS, "ghost", Unavailable)
    monkeypatch.setitem(C.CODECS, "broken", Broken)
    monkeypatch.setitem(C.CODECS, "wrongsize", WrongSize)


@pytest.fixture
def reference_dir(tmp_path):
    d = tmp_path / "ref"
    d.mkdir()
    (d / "vtm.json").write_text(json.dumps({
        "name": "VTM", "description": "fake reference",
        "results": {"bpp": [0.5, 1.0, 2.0, 4.0, 8.0], "psnr-rgb": [26.0, 30.0, 34.0, 38.0, 42.0],
                    "ms-ssim-rgb": [0.90, 0.95, 0.98, 0.99, 0.995]}}))
    return d


def test_run_writes_everything_and_resumes(small_registry, images_dir, reference_dir, tmp_path):
    out = tmp_path / "out"
    logs: list[str] = []
    rep = run_eval(images_dir, "jpeg444,webp", out, workers=1, reference_dir=reference_dir, anchor="jpeg444",
                   progress=False, log=logs.append)
    assert rep.computed == 8 and rep.cached == 0
    assert not rep.errors and not rep.skipped
    for name in ("jpeg444.json", "webp.json", "per_image.csv", "rd_psnr.png", "rd_msssim.png", "bdrate.md"):
        assert (out / name).is_file(), name
    assert (out / "rd_psnr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    d = json.loads((out / "jpeg444.json").read_text())
    assert d["name"] == "jpeg444" and d["description"]
    res = d["results"]
    assert len(res["bpp"]) == 2 and res["bpp"][0] < res["bpp"][1]
    assert res["psnr-rgb"][0] < res["psnr-rgb"][1]
    assert res["ms-ssim-rgb"] == [None, None]  # images too small for MS-SSIM
    assert all(t > 0 for t in res["encoding_time"] + res["decoding_time"])
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert len(rows) == 8 and {r["image"] for r in rows} == {"a.png", "b.png"}
    # per-point mean of per-image values
    jp = [r for r in rows if r["codec"] == "jpeg444" and r["param"] == "20"]
    assert res["bpp"][0] == pytest.approx(np.mean([float(r["bpp"]) for r in jp]), rel=1e-5)
    table = (out / "bdrate.md").read_text()
    assert "Anchor: **jpeg444**" in table
    assert "| webp |" in table and "| vtm |" in table
    assert rep.anchor == "jpeg444"

    # second run: all from the cache, same curves
    rep2 = run_eval(images_dir, "jpeg444,webp", out, workers=1, reference_dir=reference_dir, anchor="jpeg444",
                    progress=False, log=logs.append)
    assert rep2.computed == 0 and rep2.cached == 8
    assert rep2.curves["jpeg444"].bpp == rep.curves["jpeg444"].bpp
    assert any("served from the cache" in line for line in logs)

    # a changed image is recomputed, the other one is not
    from PIL import Image

    Image.fromarray(np.zeros((40, 40, 3), np.uint8) + 100).save(images_dir / "b.png")
    rep3 = run_eval(images_dir, "jpeg444", out, workers=1, progress=False, log=logs.append)
    assert rep3.computed == 2 and rep3.cached == 2


def test_default_anchor_is_vtm_reference(small_registry, images_dir, reference_dir, tmp_path):
    rep = run_eval(images_dir, ["jpeg444"], tmp_path / "o", reference_dir=reference_dir, progress=False,
                   log=lambda s: None)
    assert rep.anchor == "vtm"
    assert "Anchor: **vtm** (reference)" in rep.table


def test_skips_and_failures_do_not_stop_others(small_registry, images_dir, tmp_path):
    logs: list[str] = []
    rep = run_eval(images_dir, "ghost,broken,wrongsize,jpeg444", tmp_path / "o", progress=False, log=logs.append)
    assert rep.skipped == {"ghost": "libghost is not installed"}
    assert any(line == "skip ghost: libghost is not installed" for line in logs)
    assert "broken" in rep.errors and "encoder exploded" in rep.errors["broken"][0]
    assert "wrongsize" in rep.errors and "decoded image" in rep.errors["wrongsize"][0]
    assert set(rep.curves) == {"jpeg444"}
    assert len(rep.errors["broken"]) == 3  # given up after 3 failures out of 4 jobs
    assert (tmp_path / "o" / "jpeg444.json").is_file()
    assert not (tmp_path / "o" / "broken.json").exists()
    assert "Skipped: ghost" in rep.table


def test_small_images_leave_no_ms_ssim_plot_and_say_why(small_registry, images_dir, tmp_path):
    """Both test images are below MS-SSIM's 161 px: the MS-SSIM plot is not written, and the
    warning says which size it needs and how many images are smaller; PSNR is unaffected."""
    rep = run_eval(images_dir, "jpeg444", tmp_path / "o", reference_dir=None, progress=False,
                   log=lambda s: None)
    assert "rd_psnr.png" in rep.files and "rd_msssim.png" not in rep.files
    (warning,) = [w for w in rep.warnings if w.startswith("rd_msssim.png")]
    assert "at least 161 px a side" in warning and "2 of 2, e.g. a.png" in warning


def test_bad_arguments_raise_before_work(small_registry, images_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown codec"):
        run_eval(images_dir, "nope", tmp_path / "o", progress=False)
    with pytest.raises(FileNotFoundError):
        run_eval(tmp_path / "missing", "jpeg444", tmp_path / "o", progress=False)
    with pytest.raises(ValueError, match="anchor"):
        run_eval(images_dir, "jpeg444", tmp_path / "o", anchor="nothing", progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no PNG/JPEG"):
        run_eval(empty, "jpeg444", tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()


def test_limit_images(small_registry, images_dir, tmp_path):
    rep = run_eval(images_dir, "jpeg444", tmp_path / "o", limit_images=1, progress=False, log=lambda s: None)
    assert rep.images == ["a.png"] and rep.computed == 2


def test_workers_in_processes(images_dir, tmp_path):
    """Two worker processes with a real registry codec (the test registry is not seen by workers)."""
    rep = run_eval(images_dir, "jpeg444", tmp_path / "o", workers=2, progress=False, log=lambda s: None)
    n = len(C.get_codec("jpeg444").params())
    assert rep.computed == 2 * n and not rep.errors
    assert len(rep.curves["jpeg444"]) == n
    assert all(math.isfinite(v) for v in rep.curves["jpeg444"].psnr)


def test_resolve_anchor_names():
    from adapix.eval.results import Curve

    measured = {"jpeg444": Curve("jpeg444")}
    refs = {"vtm": Curve("VTM", source="reference", label="vtm"), "jpeg": Curve("JPEG", source="reference")}
    assert resolve_anchor("JPEG444", measured, refs) is measured["jpeg444"]
    assert resolve_anchor("vtm", measured, refs) is refs["vtm"]
    assert resolve_anchor("VTM", measured, refs) is refs["vtm"]
    assert resolve_anchor(None, measured, refs) is refs["vtm"]
    assert resolve_anchor(None, measured, {}) is measured["jpeg444"]
    assert resolve_anchor("x", measured, refs) is None


def test_adapix_options_reach_the_worker_processes(images_dir, tmp_path):
    """--adapix-weights/--adapix-qualities travel with every job to the (spawned) workers, so
    the workers code with that model at those qualities: the rows and their cache keys say so."""
    from pathlib import Path

    weights = str((Path(__file__).parents[1] / "fixtures" / "tiny.safetensors").resolve())
    opts = C.AdapixOptions(weights=weights, qualities=(20.0, 80.0))
    rep = run_eval(images_dir, "adapix:fast", tmp_path / "o", workers=2, limit_images=1,
                   progress=False, log=lambda s: None, adapix_options=opts)
    assert not rep.errors and rep.computed == 2
    rows = [json.loads(line) for line in (tmp_path / "o" / "cache" / "adapix-fast.jsonl").read_text().splitlines()]
    assert sorted(r["param"] for r in rows) == [20, 80]
    codec = C.get_codec("adapix:fast", opts)
    for r in rows:
        assert f"weights {weights} " in r["fingerprint"] and "model tiny-golden " in r["fingerprint"]
        assert r["fingerprint"] == codec.fingerprint(r["param"])
    assert C.get_codec("adapix:fast").fingerprint(20) != codec.fingerprint(20)  # other weights
    # a rerun in this process with the same options reuses them
    rep2 = run_eval(images_dir, "adapix:fast", tmp_path / "o", limit_images=1, progress=False,
                    log=lambda s: None, adapix_options=opts)
    assert (rep2.cached, rep2.computed) == (2, 0)
