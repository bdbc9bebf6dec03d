"""Tests of the ``adapix`` command line, called in-process through ``adapix.cli.main``.

Every command gets ``--model`` with the tiny test weights. Errors must come as one line
``adapix <cmd>: error: ...`` on stderr with a non-zero status, never a traceback.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adapix import container
from adapix.cli import COMMANDS, main
from adapix.codec import Codec


def write_png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def no_traceback(captured) -> bool:
    return "Traceback" not in captured.err and "Traceback" not in captured.out


@pytest.fixture
def images(tmp_path, synth_image) -> Path:
    """A folder with three PNG files, one of them corrupt."""
    d = tmp_path / "imgs"
    d.mkdir()
    write_png(d / "a.png", synth_image(20, 30, seed=1))
    write_png(d / "b.png", synth_image(33, 17, seed=2))
    (d / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    return d


def test_encode_one_file(tmp_path, tiny_weights, synth_image, capsys):
    src = write_png(tmp_path / "one.png", synth_image(24, 40, seed=3))
    out = tmp_path / "one.apx"
    assert main(["encode", str(src), "-o", str(out), "--model", str(tiny_weights),
                 "-q", "70"]) == 0
    cap = capsys.readouterr()
    assert "one.png" in cap.out and "bpp" in cap.out
    h = container.peek_header(out.read_bytes())
    assert (h.width, h.height, h.quality) == (40, 24, 70.0)
    assert h.model_id == "tiny-test"
    # default output name: next to the input
    assert main(["encode", str(src), "--model", str(tiny_weights), "--quiet"]) == 0
    assert (tmp_path / "one.apx").read_bytes() == out.read_bytes()
    assert capsys.readouterr().out == ""


def test_encode_directory_with_a_corrupt_file(images, tmp_path, tiny_weights, capsys):
    out = tmp_path / "out"
    status = main(["encode", str(images), "-o", str(out), "--model", str(tiny_weights)])
    cap = capsys.readouterr()
    assert status == 1
    assert (out / "a.apx").is_file() and (out / "b.apx").is_file()
    assert not (out / "c.apx").exists()
    assert "c.png" in cap.err and "error" in cap.err
    assert "a.png" not in cap.err and "b.png" not in cap.err
    assert no_traceback(cap)
    assert "encoded 2 of 3" in cap.out
    assert not list(out.glob(".*tmp"))  # no temporary file left behind


def test_decode_and_info(tmp_path, tiny_weights, tiny_codec, synth_image, capsys):
    src = write_png(tmp_path / "pic.png", synth_image(19, 27, seed=4))
    apx = tmp_path / "pic.apx"
    assert main(["encode", str(src), "-o", str(apx), "--model", str(tiny_weights)]) == 0
    png = tmp_path / "decoded.png"
    assert main(["decode", str(apx), "-o", str(png), "--model", str(tiny_weights)]) == 0
    with Image.open(png) as im:
        assert im.size == (27, 19) and im.mode == "RGB"
        decoded = np.asarray(im)
    assert np.array_equal(decoded, tiny_codec.decode_ex(apx.read_bytes()).image.pixels)
    capsys.readouterr()
    assert main(["info", str(apx), "--model", str(tiny_weights)]) == 0
    out = capsys.readouterr().out
    assert "decode steps" in out
    assert f"{tiny_codec.decode_steps} sequential" in out
    assert "tiny-test" in out
    assert "27 x 19" in out


def test_encode_bf16_sets_the_flag_and_decodes_to_the_reconstruction(tmp_path, tiny_weights,
                                                                      tiny_codec, synth_image,
                                                                      capsys):
    src = write_png(tmp_path / "pic.png", synth_image(19, 27, seed=4))
    apx = tmp_path / "pic.apx"
    assert main(["encode", str(src), "-o", str(apx), "--bf16", "--model", str(tiny_weights)]) == 0
    assert "bf16 synthesis" in capsys.readouterr().out
    data = apx.read_bytes()
    rec = tiny_codec.encode_ex(str(src), bf16=True)
    assert rec.data == data
    png = tmp_path / "decoded.png"
    assert main(["decode", str(apx), "-o", str(png), "--model", str(tiny_weights)]) == 0
    with Image.open(png) as im:
        assert np.array_equal(np.asarray(im), rec.reconstruction.pixels)
    capsys.readouterr()
    assert main(["info", str(apx), "--model", str(tiny_weights)]) == 0
    assert "bf16 synthesis" in capsys.readouterr().out


def test_info_without_matching_model(tmp_path, tiny_weights, synth_image, capsys):
    src = write_png(tmp_path / "p.png", synth_image(8, 8))
    apx = tmp_path / "p.apx"
    assert main(["encode", str(src), "-o", str(apx), "--model", str(tiny_weights)]) == 0
    capsys.readouterr()
    missing = tmp_path / "nope.safetensors"
    assert main(["info", str(apx), "--model", str(missing)]) == 0
    cap = capsys.readouterr()
    assert "decode steps" in cap.out and "unknown" in cap.out


def test_decode_and_info_errors(tmp_path, tiny_weights, capsys):
    bad = tmp_path / "bad.apx"
    bad.write_bytes(b"\x89APX\x01 truncated")
    for cmd in ("decode", "info"):
        assert main([cmd, str(bad), "--model", str(tiny_weights)]) == 1
        cap = capsys.readouterr()
        assert f"adapix {cmd}: error:" in cap.err and "bad.apx" in cap.err
        assert no_traceback(cap)
    assert main(["decode", str(tmp_path / "missing.apx"), "--model", str(tiny_weights)]) == 1
    assert no_traceback(capsys.readouterr())


def test_bad_model_file_is_an_error(tmp_path, synth_image, capsys):
    src = write_png(tmp_path / "x.png", synth_image(8, 8))
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"garbage")
    assert main(["encode", str(src), "--model", str(fake)]) == 1
    cap = capsys.readouterr()
    assert "adapix encode: error:" in cap.err and no_traceback(cap)
    assert not (tmp_path / "x.apx").exists()


def exit_status(argv: list[str]) -> int:
    """Status of ``adapix ARGV`` as the console script would exit: returned or via SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_of_each_subcommand(command, capsys):
    """``adapix CMD --help`` prints the usage and exits 0. The argparse-based commands leave
    through SystemExit(0); eval and bench catch it and return 0: both give exit status 0."""
    if command in ("encode", "decode", "info", "train", "export"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
    else:
        assert exit_status([command, "--help"]) == 0
    cap = capsys.readouterr()
    assert "usage:" in cap.out
    assert no_traceback(cap)


def test_top_level_usage(capsys):
    assert main(["--help"]) == 0
    assert "usage: adapix" in capsys.readouterr().out
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    cap = capsys.readouterr()
    assert "unknown command" in cap.err and no_traceback(cap)
    assert main(["--version"]) == 0
    assert "adapix" in capsys.readouterr().out


def test_every_command_module_exists():
    for name, (module, _) in COMMANDS.items():
        assert callable(importlib.import_module(module).main), name


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["encode"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["encode", "x.png", "--quality", "high"])
    assert exc.value.code == 2
    assert no_traceback(capsys.readouterr())


def test_quality_out_of_range(tmp_path, tiny_weights, synth_image, capsys):
    src = write_png(tmp_path / "q.png", synth_image(8, 8))
    assert main(["encode", str(src), "-q", "101", "--model", str(tiny_weights)]) == 1
    cap = capsys.readouterr()
    assert "quality" in cap.err and no_traceback(cap)


def test_encode_refuses_to_overwrite_its_input(tmp_path, tiny_weights, synth_image, capsys):
    src = write_png(tmp_path / "keep.png", synth_image(16, 16, seed=5))
    before = src.read_bytes()
    assert main(["encode", str(src), "-o", str(src), "--model", str(tiny_weights)]) == 1
    cap = capsys.readouterr()
    assert "overwrite" in cap.err and no_traceback(cap)
    assert src.read_bytes() == before
    # an input that already is named like its output (x.apx given as image) is refused too
    odd = tmp_path / "odd.apx"
    odd.write_bytes(before)
    assert main(["encode", str(odd), "--model", str(tiny_weights)]) == 1
    assert odd.read_bytes() == before
    assert no_traceback(capsys.readouterr())


def tiny_run_overrides(data: Path, out: Path, steps: int = 2) -> list[str]:
    """load_run_config overrides for a TINY-model training run on ``data``."""
    from adapix.config import TINY

    return [f"model.N={TINY.N}", f"model.M={TINY.M}", f"model.Nh={TINY.Nh}",
            f"model.scales={TINY.scales}", f"model.groups={TINY.groups}",
            f"model.ctx_hidden={TINY.ctx_hidden}", f"model.syntax_dim={TINY.syntax_dim}",
            f"model.postfilter_channels={TINY.postfilter_channels}",
            f"train.data={data}", f"train.out={out}", "train.crop=64", "train.batch=2",
            f"train.steps={steps}", "train.compile=false", "train.bf16=false",
            "train.val_every=0", "train.val_holdout=1", "train.model_id=tiny-trained"]


def test_export_a_trained_checkpoint_and_encode_with_it(tmp_path, synth_image, capsys):
    from adapix.train.config import load_run_config
    from adapix.train.loop import Trainer

    data = tmp_path / "train"
    data.mkdir()
    for i in range(3):
        write_png(data / f"img{i}.png", synth_image(96, 96, seed=10 + i))
    run_dir = tmp_path / "run"
    run = load_run_config(None, tiny_run_overrides(data, run_dir))
    Trainer(run, resume=False, progress=False).fit()
    ckpt = run_dir / "checkpoint.pt"
    assert ckpt.is_file()
    capsys.readouterr()

    weights = tmp_path / "exported.safetensors"
    assert main(["export", str(ckpt), "-o", str(weights)]) == 0
    cap = capsys.readouterr()
    assert "tiny-trained" in cap.out and no_traceback(cap)
    codec = Codec(weights)
    assert codec.model_id == "tiny-trained"
    assert codec.loaded.meta["steps"] == "2"
    assert codec.model.cfg == run.model

    src = write_png(tmp_path / "photo.png", synth_image(50, 70, seed=20))
    apx = tmp_path / "photo.apx"
    assert main(["encode", str(src), "-o", str(apx), "--model", str(weights)]) == 0
    png = tmp_path / "photo.dec.png"
    assert main(["decode", str(apx), "-o", str(png), "--model", str(weights)]) == 0
    with Image.open(png) as im:
        assert im.size == (70, 50)
        assert np.array_equal(np.asarray(im), codec.decode_ex(apx.read_bytes()).image.pixels)
    assert no_traceback(capsys.readouterr())


def test_export_of_a_bad_checkpoint_is_an_error(tmp_path, capsys):
    """Fails (src bug): cli/export.py catches (OSError, KeyError, RuntimeError, TypeError,
    ValueError) around torch.load, but a file that is not a checkpoint raises
    pickle.UnpicklingError, which escapes with a traceback."""
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["export", str(bad), "-o", str(tmp_path / "w.safetensors")]) == 1
    cap = capsys.readouterr()
    assert "adapix export: error:" in cap.err and no_traceback(cap)
    assert not (tmp_path / "w.safetensors").exists()
