"""Shared fixtures of the Adapix tests: a tiny random model exported to a weights file, a Codec
on it, and synthetic test images (smooth gradients + noise, uint8) of any size.

Everything runs on the CPU in a few seconds: the TINY configuration has ~230k parameters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from adapix.config import TINY, ModelConfig
from adapix.model import AdapixModel
from adapix.weights import build_tables, export_weights

TINY_ID = "tiny-test"


def synthetic_image(h: int, w: int, seed: int = 0, channels: int = 3,
                    noise: float = 6.0) -> np.ndarray:
    """A smooth colour gradient with a flat block, a sine pattern and mild noise: (h, w, channels)
    uint8 (channels 1, 3 or 4; the 4th channel is a gradient alpha). Works for any size >= 1x1."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = [40 + 170 * xx / max(w - 1, 1),
              60 + 140 * yy / max(h - 1, 1),
              128 + 80 * np.sin(xx / 6.0) * np.cos(yy / 9.0)]
    img = np.stack(planes, axis=-1)
    img[h // 3: h // 2, w // 4: w // 2] = (220, 40, 40)
    img += rng.normal(0.0, noise, img.shape)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if channels == 1:
        return np.ascontiguousarray(img.mean(axis=2, keepdims=True).round().astype(np.uint8))
    if channels == 4:
        alpha = np.clip(255 * (xx + yy) / max(h + w - 2, 1), 0, 255).round().astype(np.uint8)
        return np.ascontiguousarray(np.concatenate([img, alpha[..., None]], axis=2))
    assert channels == 3
    return img


def perturb_model(model: AdapixModel, generator: torch.Generator) -> None:
    """Makes a freshly initialised model exercise every coding path, in place.

    An untrained model maps images to |y| < 0.5, |z|, |s| < 0.3 (every symbol 0) and leaves the
    per-image paths at zero. Scaling the last analysis layers gives latents spanning several
    integers (y up to ~7 at quality 60, z and s up to ~4), the synthesis is rescaled so that
    x_hat stays inside (0, 1) around mid-grey, and the weight generator, post-filter output and
    gains (and the rate modulation's tables, if any) get small random values. (Same recipe as
    tests/fixtures/make_golden.py.)
    """
    with torch.no_grad():
        model.g_a.net[-1].weight.mul_(40)
        model.g_a.net[-1].bias.mul_(40)
        model.h_a.net[-1].weight.mul_(25)
        model.syntax.out.weight.mul_(5)
        model.g_s.body[0].weight.div_(10)
        model.g_s.last.weight.mul_(5)
        model.g_s.last.bias.fill_(0.5)
        for p, std in ((model.generator.synth.weight, 0.05), (model.generator.post.weight, 0.05),
                       (model.postfilter.c3.weight, 0.02)):
            p.copy_(torch.randn(p.shape, generator=generator) * std)
        model.log_gain.add_(0.05 * torch.randn(model.log_gain.shape, generator=generator))
        if model.rate_mod is not None:  # (no TINY model has it: the golden recipe is unchanged)
            for p in model.rate_mod.parameters():
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))


def make_tiny_model(seed: int = 0, cfg: ModelConfig = TINY, perturb: bool = True) -> AdapixModel:
    """A random model (``torch.manual_seed(seed)``) with tables built, in eval mode; see
    :func:`perturb_model` for ``perturb``."""
    torch.manual_seed(seed)
    model = AdapixModel(cfg)
    if perturb:
        perturb_model(model, torch.Generator().manual_seed(seed))
    model.eval()
    build_tables(model)
    return model


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """Path of a fp32 weights file of the TINY model (seed 0, perturbed), model id
    ``tiny-test``."""
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    export_weights(make_tiny_model(0), path, TINY_ID, fp16=False)
    return path


@pytest.fixture(scope="session")
def tiny_codec(tiny_weights):
    from adapix.codec import Codec

    return Codec(tiny_weights)


@pytest.fixture
def synth_image():
    """The :func:`synthetic_image` factory: ``synth_image(h, w, seed=0, channels=3)``."""
    return synthetic_image


@pytest.fixture
def make_model():
    """The :func:`make_tiny_model` factory: ``make_model(seed=0, cfg=TINY, perturb=True)``."""
    return make_tiny_model


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: one torch thread is faster and does not fight a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
