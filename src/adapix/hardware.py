"""What this CPU does fast: one query shared by training and the encoder's optimisation proxy,
and the memory allocator setting that every entry point applies (:func:`tune_allocator`)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

import torch

# mallopt(3) parameters of glibc
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD = 2 ** 31 - 1  # bytes: free memory at the top of the heap is kept (up to 2 GiB)
OPT_OUT_ENV = "ADAPIX_SYSTEM_MALLOC"  # set to 1 to leave the C allocator as it is
_allocator_state: bool | None = None


def tune_allocator() -> bool:
    """Serves large tensors from glibc's heap instead of a fresh ``mmap`` each time.

    glibc's malloc hands every block above its mmap threshold (at most 32 MiB) to a new ``mmap``
    and returns it to the kernel on ``free``; the activations of a 768x512 image (or of a
    training batch) are such blocks, so every forward pass page-faults all of them in again.
    With ``mmap`` off for malloc and the heap kept (``mallopt(M_MMAP_MAX, 0)``,
    ``mallopt(M_TRIM_THRESHOLD, 2 GiB)``), freed blocks are reused. Measured on the AMD EPYC of
    sessions 4-12 (AVX2, 2 threads, 768x512, ``python scripts/tune_profiles.py
    --bench-iteration --threads 2``, session 12): one gradient iteration of the encoder's proxy
    0.91 -> 0.64 s, one true-cost evaluation (real coding) 0.78 -> 0.48 s, system time of the
    whole benchmark 23 -> 1.2 s; ``fast`` decode of kodim23 0.82 -> 0.47 s (docs/results.md,
    "Speed"). Numerics do not change (only where memory comes from).

    Process-wide, so it is called by the entry points (the ``adapix`` command, :class:`Codec`,
    the trainer, the ablation runner), not on import. Memory freed by the process stays with it
    (up to the trim threshold) instead of going back to the system. Returns True when the
    setting is in effect (Linux with glibc), False where it does not apply or
    ``ADAPIX_SYSTEM_MALLOC=1``.
    Idempotent.
    """
    global _allocator_state
    if _allocator_state is None:
        _allocator_state = _apply_mallopt()
    return _allocator_state


def _apply_mallopt() -> bool:
    if os.environ.get(OPT_OUT_ENV, "").strip() not in ("", "0"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1)


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
