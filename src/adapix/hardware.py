"""What this CPU does fast: one query shared by training and the encoder's optimisation proxy."""

from __future__ import annotations

import torch


def bf16_is_fast() -> bool:
    """True when oneDNN has native bfloat16 kernels on this CPU (AVX512-BF16 / AMX).

    Without them, bfloat16 convolutions fall back to slow reference kernels: on an AVX2 CPU
    (AMD EPYC, torch 2.13.0) one 96-channel 5x5 convolution on 8x96x48x48 took 1.36 s in bf16
    against 0.12 s in float32 (channels_last), and a post-filter-stage training step of the
    default model (8x192x192, 1 thread) ran at 0.09 it/s in bf16 autocast against 0.75 in float32.
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
        print("note: this CPU has no native bfloat16 kernels (bf16 training measured about 8x "
              "slower than float32 on one); training in float32")
        return False
    return requested
