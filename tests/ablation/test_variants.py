"""Tests of adapix.ablation: the entropy-model variants, the ablation model and the runner.

Tiny configurations only (seconds on one CPU thread).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from adapix.ablation import main
from adapix.ablation.model import AblationModel, Variant, build_ablation_model
from adapix.ablation.variants import (CONTEXTS, MaskedConv2d, SerialContext, build_entropy_model,
                                      entropy_parameter_counts)
from adapix.config import TINY
from adapix.entropy.gaussian import gaussian_likelihood
from adapix.model import ForwardOutput

M = TINY.M


def _inputs(h: int, w: int, seed: int = 0, B: int = 2):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(B, 2 * M, h, w, generator=g)
    y = 3.0 * torch.randn(B, M, h, w, generator=g)
    return feats, y


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("mode", ["noise", "ste"])
def test_variant_contract(context, mode):
    torch.manual_seed(0)
    ent = build_entropy_model(TINY, context).train()
    feats, y = _inputs(8, 12)
    y = y.requires_grad_()
    y_hat, bits = ent(feats, y, mode)
    assert y_hat.shape == y.shape and bits.shape == (2,)
    assert torch.isfinite(bits).all() and (bits > 0).all()
    if context == "serial":  # Minnen et al. 2018: y_hat = round(y), the mean only in the rate
        assert torch.equal(y_hat.detach(), y.detach().round())
    (bits.sum() + y_hat.sum()).backward()
    assert torch.isfinite(y.grad).all()


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("stream", [True, False])
def test_ablation_model_forward(context, stream):
    torch.manual_seed(0)
    model = build_ablation_model(TINY, context, stream)
    assert isinstance(model, AblationModel) and model.variant == Variant(context, stream)
    x = torch.rand(2, 3, 64, 64)
    out = model(x, torch.tensor([0.5, 4.0]))
    assert isinstance(out, ForwardOutput) and out.x_hat.shape == x.shape
    for b in (out.bits_y, out.bits_z, out.bits_s):
        assert b.shape == (2,) and torch.isfinite(b).all()
    assert (out.bits_s > 0).all() if stream else torch.equal(out.bits_s, torch.zeros(2))
    out.bits.sum().backward()
    steps = model.decode_steps_at((64, 128))
    assert steps == {"msp": 15, "hyperprior": 2, "serial": 1 + 4 * 8}[context]


def test_ablation_model_refuses_a_rate_weight():
    """rd_loss always passes rate_weight; None is accepted, a weight is an error (ablation
    models are never widened in M)."""
    torch.manual_seed(0)
    model = build_ablation_model(TINY, "hyperprior", True)
    x, t = torch.rand(1, 3, 64, 64), torch.tensor([1.0])
    assert model(x, t, rate_weight=None).x_hat.shape == x.shape
    with pytest.raises(ValueError, match="rate_weight"):
        model(x, t, rate_weight=torch.ones(TINY.M))


def test_same_seed_same_transforms():
    torch.manual_seed(3)
    a = build_ablation_model(TINY, "msp", True)
    torch.manual_seed(3)
    b = build_ablation_model(TINY, "serial", False)
    for name in ("g_a", "g_s", "h_a", "h_s", "syntax", "generator", "z_prior", "s_prior"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name


def test_stream_off_gives_zero_stream():
    torch.manual_seed(0)
    model = build_ablation_model(TINY, "msp", False).eval()
    x = torch.rand(1, 3, 64, 64)
    t = torch.tensor([2.0])
    with torch.no_grad():
        before = model(x, t)
        model.syntax.out.weight.mul_(50)  # another s: nothing may change
        model.syntax.out.bias.add_(3)
        after = model(x, t)
    assert torch.equal(before.bits_s, torch.zeros(1)) and torch.equal(after.bits_s, torch.zeros(1))
    assert torch.equal(before.x_hat, after.x_hat)
    with pytest.raises(NotImplementedError):
        model.fixed_nets()


def test_parameter_counts_comparable():
    for cfg in (TINY, TINY.__class__(N=64, M=96, Nh=64, ctx_hidden=96)):
        counts = entropy_parameter_counts(cfg)
        ref = counts["msp"][1]
        for name, (_, effective) in counts.items():
            assert abs(effective - ref) / ref < 0.02, (name, counts)


def test_mask_is_type_a():
    conv = MaskedConv2d(2, 3, 5)
    w = conv.masked_weight()
    assert (w[:, :, 2, 2:] == 0).all() and (w[:, :, 3:] == 0).all()
    assert (w[:, :, :2] != 0).all() and (w[:, :, 2, :2] != 0).all()


def _position_bits(ent: SerialContext, feats, y) -> torch.Tensor:
    """Bits of every latent position (summed over channels), (h, w), parallel pass."""
    y_hat = torch.round(y)
    mu, sigma = ent.params(feats, y_hat)
    return -torch.log2(gaussian_likelihood(y_hat, mu, sigma, TINY.scale_min))[0].sum(0)


def test_serial_context_is_causal():
    torch.manual_seed(1)
    ent = SerialContext(TINY).eval()
    feats, y = _inputs(6, 7, seed=2, B=1)
    h, w = y.shape[-2:]
    with torch.no_grad():
        base = _position_bits(ent, feats, y).flatten()
        for p in (0, 9, 20, h * w - 1):
            y2 = y.clone()
            y2[0, :, p // w, p % w] += 7.0
            mu_a, sig_a = ent.params(feats, torch.round(y))
            mu_b, sig_b = ent.params(feats, torch.round(y2))
            flat = lambda t: t[0].flatten(1)  # noqa: E731  (M, h*w)
            # the parameters of p itself and of every earlier position are unchanged
            assert torch.allclose(flat(mu_a)[:, : p + 1], flat(mu_b)[:, : p + 1], atol=1e-5)
            assert torch.allclose(flat(sig_a)[:, : p + 1], flat(sig_b)[:, : p + 1], rtol=1e-5)
            changed = _position_bits(ent, feats, y2).flatten()
            assert torch.allclose(base[:p], changed[:p], rtol=1e-5, atol=1e-4)
            if p < h * w - 1:  # and the context does reach later positions
                assert not torch.allclose(flat(mu_a)[:, p + 1:], flat(mu_b)[:, p + 1:])


def test_decode_serial_equals_parallel():
    torch.manual_seed(4)
    ent = SerialContext(TINY).eval()
    feats, y = _inputs(5, 6, seed=5)
    with torch.no_grad():
        y_par, bits_par = ent(feats, y, "ste")
    y_ser, bits_ser = ent.decode_serial(feats, y)
    assert torch.equal(y_ser, y_par)
    assert torch.allclose(bits_ser, bits_par, rtol=1e-4)


# ---- the runner ---------------------------------------------------------------------------------

def _image_folder(root, n: int = 3, size: tuple[int, int] = (96, 128)):
    root.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size[0], 0:size[1]]
    for i in range(n):
        img = np.stack([xx * 2 + 10 * i, yy * 2, (xx + yy) % 256], -1) + rng.normal(0, 8, (*size, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / f"img{i}.png")
    return root


TINY_ARGS = ["--N", "8", "--M", "12", "--Nh", "8", "--ctx-hidden", "12", "--syntax-dim", "4",
             "--batch", "2", "--crop", "64", "--qualities", "20,80", "--time-size", "128x64",
             "--time-runs", "1", "--no-progress"]


def test_main_end_to_end(tmp_path, capsys):
    data = _image_folder(tmp_path / "imgs")
    out = tmp_path / "out"
    argv = ["--data", str(data), "--eval-dir", str(data), "--out", str(out), "--steps", "2",
            *TINY_ARGS]
    assert main(argv) == 0
    report = json.loads((out / "ablation.json").read_text())
    names = [v["name"] for v in report["variants"]]
    assert names == ["msp", "hyperprior", "serial", "msp-nostream"]
    assert report["anchor"] == "msp" and report["eval_images"] == 3
    for v in report["variants"]:
        assert (out / f"{v['name']}.pt").exists()
        assert v["train"]["steps"] == 2 and len(v["points"]) == 2
        assert all(np.isfinite(p["bpp"]) and p["bpp"] > 0 for p in v["points"])
        assert (v["bd_rate"] is None) == (v["name"] == "msp")
        assert v["timing"]["width"] == 128 and v["timing"]["decode_s"] > 0
    steps = {v["name"]: v["timing"]["sequential_steps"] for v in report["variants"]}
    assert steps == {"msp": 15, "hyperprior": 2, "serial": 1 + 4 * 8, "msp-nostream": 15}
    assert all(v["points"][0]["bpp_s"] == 0 for v in report["variants"] if v["name"].endswith("nostream"))
    assert "| serial |" in (out / "ablation.md").read_text()
    assert "| serial |" in capsys.readouterr().out
    # the same command again reuses the finished checkpoints
    assert main([*argv, "--variants", "serial", "--anchor", "serial", "--no-timing"]) == 0
    again = json.loads((out / "ablation.json").read_text())["variants"]
    assert [v["train"]["resumed_from"] for v in again] == [2] and again[0]["timing"] is None
    assert again[0]["train"]["final_loss"] is not None  # kept in the checkpoint


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "must be >= 1"),
    (["--variants", "msp,foo"], "unknown variant"),
    (["--variants", "serial"], "--anchor 'msp' is not among"),
    (["--crop", "100"], "multiple of 64"),
    (["--qualities", "50"], ">= 2 distinct"),
    (["--time-size", "big"], "bad size"),
    (["--M", "13"], "divisible by groups"),
    (["--bogus"], "unrecognized arguments"),
])
def test_bad_arguments(tmp_path, capsys, args, message):
    assert main(["--data", str(tmp_path), "--eval-dir", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_missing_folder_and_help(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "nope"), "--eval-dir", str(tmp_path)]) == 2
    assert "image folder not found" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "serial" in capsys.readouterr().out
