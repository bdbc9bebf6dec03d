from __future__ import annotations

import json

import pytest

from adapix.cli.eval import main


def test_list(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "jpeg444" in out and "vvc" in out and "adapix" in out


def test_help(capsys):
    assert main(["--help"]) == 0
    assert "adapix eval" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    [],
    ["--bogus"],
    ["--workers", "0", "."],
    ["--limit", "x", "."],
    ["/definitely/not/here"],
    ["--adapix-qualities", "50", "."],
])
def test_bad_arguments(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("adapix eval: error: ")


def test_bad_codec_and_anchor(images_dir, tmp_path, capsys):
    assert main([str(images_dir), "--codecs", "jpeg444,nope", "--out", str(tmp_path / "o")]) == 2
    assert "unknown codec 'nope'" in capsys.readouterr().err
    assert main([str(images_dir), "--codecs", "jpeg444", "--anchor", "zzz", "--reference", "none",
                 "--out", str(tmp_path / "o")]) == 2
    assert "anchor 'zzz'" in capsys.readouterr().err
    assert main([str(images_dir), "--reference", str(tmp_path / "nothere")]) == 2


def test_small_run(images_dir, tmp_path, capsys):
    out = tmp_path / "o"
    argv = [str(images_dir), "--codecs", "jpeg444", "--out", str(out), "--reference", "none", "--no-progress"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "BD-rates" in text and "| **jpeg444** (anchor)" in text
    d = json.loads((out / "jpeg444.json").read_text())
    assert len(d["results"]["bpp"]) >= 6
    assert main(argv) == 0
    assert "computed 0" in capsys.readouterr().out
