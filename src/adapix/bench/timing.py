"""Timing and complexity helpers, and the Adapix (full codec and synthesis-only) measurements."""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Callable, Iterator

import numpy as np
import torch

from ..profiles import BF16_SUFFIX
from .results import DEFAULT_RUNS, SYNTHESIS, SpeedResult


# ---- timing helpers ----------------------------------------------------------------------------

def median_time(fn: Callable[[], object], runs: int, warmup: int = 1) -> tuple[float, object]:
    """Median wall time (s) of ``runs`` calls of fn after ``warmup`` uncounted calls; also the last
    return value."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def count_kmac_per_pixel(fn: Callable[[], object], pixels: int) -> float:
    """kMAC per pixel of one call of fn: conv + matmul FLOPs from FlopCounterMode, / 2 / 1000."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2.0 / pixels / 1000.0


# ---- Adapix ------------------------------------------------------------------------------------

def _padded(width: int, height: int, multiple: int) -> tuple[int, int]:
    return -(-width // multiple) * multiple, -(-height // multiple) * multiple


def bench_adapix(codec, pixels: np.ndarray, profile: str = "fast", runs: int = DEFAULT_RUNS,
                 quality: float = 50.0, time_budget: float | None = None,
                 complexity: bool = True, bf16: bool = False) -> tuple[SpeedResult, bytes]:
    """Median encode and decode time of one picture (H, W, 3 uint8) with a Codec and profile
    (``bf16``: the synthesis in bfloat16, row ``adapix:<profile>+bf16``); also the decoder's
    kMAC/pixel. Returns the result and the coded bytes."""
    from ..images import RasterImage

    raster = RasterImage(pixels=pixels)
    h, w = pixels.shape[:2]
    # no torch.no_grad() here: the model's coding methods have their own, and optimising
    # profiles need gradients (as in the CLI)
    enc_s, res = median_time(lambda: codec.encode_ex(raster, quality=quality, profile=profile,
                                                     time_budget=time_budget, bf16=bf16),
                              runs)
    data = res.data
    dec_s, _ = median_time(lambda: codec.decode_ex(data), runs)
    kmac = count_kmac_per_pixel(lambda: codec.decode_ex(data), w * h) if complexity else None
    return SpeedResult(name=f"adapix:{profile}{BF16_SUFFIX if bf16 else ''}", width=w, height=h,
                       encode_s=enc_s,
                       decode_s=dec_s, runs=runs, kmac_per_pixel=kmac, bytes=len(data)), data


def synthesis_input(model, width: int, height: int, seed: int = 0):
    """(y_hat, s_hat, t) of the latent size of a width x height image: integer-valued y_hat with
    a spread like a coded latent's, a zero model stream, the middle quality."""
    wp, hp = _padded(width, height, model.cfg.pad_multiple)
    g = torch.Generator().manual_seed(seed)
    y_hat = torch.round(2.0 * torch.randn(1, model.cfg.M, hp // 16, wp // 16, generator=g))
    s_hat = torch.zeros(1, model.cfg.syntax_dim)
    t = torch.tensor([(len(model.cfg.lambdas) - 1) / 2.0])
    return y_hat, s_hat, t


def bench_synthesis(model, width: int, height: int, runs: int = DEFAULT_RUNS, seed: int = 0,
                    complexity: bool = True, bf16: bool = False) -> SpeedResult:
    """The synthesis transform alone (model.synthesize, no post-filter; ``bf16``: in bfloat16)
    at the latent size of a width x height image: median time and kMAC/pixel."""
    y_hat, s_hat, t = synthesis_input(model, width, height, seed)

    def run():
        with torch.no_grad():
            return model.synthesize(y_hat, s_hat, t, postfilter=False, bf16=bf16).clamp(0, 1)

    dec_s, _ = median_time(run, runs)
    kmac = count_kmac_per_pixel(run, width * height) if complexity else None
    return SpeedResult(name=f"adapix:{SYNTHESIS}{BF16_SUFFIX if bf16 else ''}", width=width,
                       height=height, encode_s=None,
                       decode_s=dec_s, runs=runs, kmac_per_pixel=kmac,
                       note="g_s only (model.synthesize), no entropy decoding")
