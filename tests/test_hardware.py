"""adapix.hardware: bf16 is only used for training where the CPU runs it natively."""

import pytest

from adapix import hardware


@pytest.mark.parametrize("native", [True, False])
def test_training_bf16_falls_back_without_native_kernels(monkeypatch, capsys, native):
    monkeypatch.setattr(hardware, "bf16_is_fast", lambda: native)
    assert hardware.training_bf16(True, "cpu") is native
    assert ("no native bfloat16" in capsys.readouterr().out) is (not native)
    assert hardware.training_bf16(False, "cpu") is False
    assert hardware.training_bf16(True, "cuda") is True  # the CPU's kernels don't matter there


def test_bf16_is_fast_is_a_bool():
    assert isinstance(hardware.bf16_is_fast(), bool)


def test_tune_allocator_applies_once_on_glibc(monkeypatch):
    import ctypes
    import sys

    calls = []
    monkeypatch.setattr(hardware, "_allocator_state", None)
    monkeypatch.delenv(hardware.OPT_OUT_ENV, raising=False)
    real = hardware._apply_mallopt
    monkeypatch.setattr(hardware, "_apply_mallopt", lambda: calls.append(1) or real())
    first = hardware.tune_allocator()
    assert hardware.tune_allocator() is first and calls == [1]  # idempotent: applied once
    if sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "gnu_get_libc_version"):
        assert first is True  # glibc accepts both mallopt settings


def test_tune_allocator_opt_out(monkeypatch):
    monkeypatch.setattr(hardware, "_allocator_state", None)
    monkeypatch.setenv(hardware.OPT_OUT_ENV, "1")
    assert hardware.tune_allocator() is False


def test_entry_points_tune_the_allocator(monkeypatch, tmp_path):
    from adapix import codec as codec_mod
    from adapix.cli import main as cli_main

    seen = []
    monkeypatch.setattr(hardware, "tune_allocator", lambda: seen.append("cli") or True)
    assert cli_main(["info", str(tmp_path / "missing.apx")]) != 0  # a clear error, no traceback
    assert seen == ["cli"]
    monkeypatch.setattr(codec_mod, "tune_allocator", lambda: seen.append("codec") or True)
    codec_mod.Codec(None)
    assert seen == ["cli", "codec"]
