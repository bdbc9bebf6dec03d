"""Tests of scripts/step_profile.py: the parts of a training step, timed, on the tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adapix.config import TINY
from helpers import load_script


@pytest.fixture
def script():
    return load_script("step_profile")


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    data = tmp_path / "photos"
    data.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(data / f"{i}.png")
    model = "\n".join(f"{k} = {getattr(TINY, k)}" for k in
                      ("N", "M", "Nh", "scales", "groups", "ctx_hidden", "syntax_dim",
                       "postfilter_channels"))
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(f'[model]\n{model}\n[train]\ndata = "{data}"\ncrop = 64\nbatch = 2\n'
                   "compile = false\nbf16 = false\nval_holdout = 1\n")
    return cfg


def test_times_each_part_and_lists_operators(script, tiny_config, capsys):
    assert script.main(["--config", str(tiny_config), "--steps", "2", "--warmup", "1",
                        "--ops", "5", "--set", "train.threads=1"]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert "it/s (bf16 False, batch 2 of 64^2, 1 threads)" in first
    ms = {part: float(first.split(f"{part} ")[1].split(" ms")[0]) for part in script.PARTS}
    assert ms["forward"] > 0 and ms["backward"] > 0
    assert "Self CPU" in out  # torch.profiler's table


def test_bad_input_is_a_clear_error(script, tiny_config, tmp_path, capsys):
    assert script.main(["--config", str(tiny_config), "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err
    assert script.main(["--config", str(tiny_config), "--set", f"train.data={tmp_path / 'no'}"]) == 2
    assert "error:" in capsys.readouterr().err
    assert script.main(["--config", str(tmp_path / "missing.toml")]) == 2
    assert "error:" in capsys.readouterr().err
