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
