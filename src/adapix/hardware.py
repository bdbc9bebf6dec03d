"""What this CPU does fast: one query shared by training and the encoder's optimisation proxy."""

from __future__ import annotations

import torch


def bf16_is_fast() -> bool:
    """True when oneDNN has native bfloat16 kernels on this CPU (AVX512-BF16 / AMX).

    Without them, bfloat16 convolutions fall back to slow kernels: on an AVX2 CPU (AMD EPYC,
    torch 2.13.0, 1 thread) one 96-channel 5x5 convolution on 8x96x48x48 took 1.14 s in bf16
    autocast against 0.12 s in float32 (``python scripts/cpu_check.py``).
    """
    try:
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - old or unusual builds
        return False


def training_bf16(requested: bool, device_type: str) -> bool:
    """Whether to train in bf16 autocast: as ``requested``, except on a CPU without native bf16
    kernels, where float32 is used (and a note printed) because it is several times faster."""
    if requested and device_type == "cpu" and not bf16_is_fast():
        print("note: this CPU has no native bfloat16 kernels (bf16 convolutions run several "
              "times slower than float32 there: scripts/cpu_check.py); training in float32")
        return False
    return requested
