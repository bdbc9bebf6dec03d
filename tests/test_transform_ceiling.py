"""Tests of scripts/transform_ceiling.py: the coded, unquantised and fitted-latent PSNR per
quality position, on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from helpers import load_script


@pytest.fixture
def script(monkeypatch):
    return load_script("transform_ceiling", monkeypatch)  # it imports latent_usage from beside it


def test_fitted_latent_is_at_least_the_unquantised_one(script, tiny_weights, synth_image,
                                                       tmp_path, capsys):
    """With --fit-steps, each row gains a fourth number, the PSNR of g_s(y) with y fitted to the
    image, which starts at g_a(x) and so is never below the unquantised PSNR; Adam steps on the
    latent raise it on a random model."""
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(synth_image(64, 128)).save(images / "a.png")
    args = [str(images), "--weights", str(tiny_weights), "--positions", "1,4"]
    assert script.main(args + ["--fit-steps", "20"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "y fitted" in lines[0]
    rows = [line.split() for line in lines[1:]]
    assert [r[0] for r in rows] == ["t=1", "t=4"]
    for r in rows:
        unquantised, fitted = float(r[5]), float(r[7])
        assert fitted > unquantised
    assert script.main(args) == 0
    plain = capsys.readouterr().out.splitlines()
    assert "y fitted" not in plain[0] and len(plain[1].split()) == 7
    assert [line.split()[5] for line in plain[1:]] == [r[5] for r in rows]


def test_fit_report_traces_the_fit_and_limit_keeps_the_first_images(script, tiny_weights,
                                                                    synth_image, tmp_path, capsys,
                                                                    monkeypatch):
    """--fit-report prints the fitted PSNR after each step count, never falling and ending at
    the row's own number; --limit 1 keeps one of the two images (the first, by name) and does
    not read the other."""
    import latent_usage  # what the script imported its loader from

    read = []
    load_rgb = latent_usage.load_rgb
    monkeypatch.setattr(latent_usage, "load_rgb",
                        lambda path, *rest: read.append(Path(path).name) or load_rgb(path, *rest))
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(synth_image(64, 128)).save(images / "a.png")
    Image.fromarray(synth_image(128, 64, seed=3)).save(images / "b.png")
    args = [str(images), "--weights", str(tiny_weights), "--positions", "4", "--fit-steps", "12"]
    assert script.main(args + ["--fit-report", "3,12,1", "--limit", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("1 images") and read == ["a.png"]
    trace = [line.split() for line in lines[2:]]
    assert [r[2] for r in trace] == ["1", "3", "12"]
    values = [float(r[4]) for r in trace]
    assert values == sorted(values) and values[0] < values[-1]
    assert f"{values[-1]:.2f}" == lines[1].split()[7]
    assert script.main(args) == 0
    assert capsys.readouterr().out.startswith("2 images")


def test_bad_arguments_are_clear_errors(script, tiny_weights, tmp_path, capsys):
    assert script.main([str(tmp_path), "--weights", str(tiny_weights), "--fit-steps", "-1"]) == 2
    assert "--fit-steps" in capsys.readouterr().err
    for bad in (["--fit-steps", "5", "--fit-report", "6"], ["--fit-report", "x"],
                ["--limit", "-2"]):
        assert script.main([str(tmp_path), "--weights", str(tiny_weights), *bad]) == 2
        assert bad[-2] in capsys.readouterr().err
    assert script.main([str(tmp_path / "nothing"), "--weights", str(tiny_weights)]) == 2
    assert "not a folder" in capsys.readouterr().err
