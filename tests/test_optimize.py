"""Tests of adapix.optimize: encoder-side RD optimisation never hurts, decodes exactly, respects
the time budget; the greedy rounding search and the quality bisection (encode_to_target)."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from adapix.config import TINY
from adapix.hardware import bf16_is_fast
from adapix.images import pad_to_multiple
from adapix.optimize import (GreedySearch, Phase, Preset, encode_to_target, measure,
                             optimize_latents, optimize_latents_ex, proxy_loss, rd_cost_of,
                             rd_cost_true, sga_round)
from helpers import harm_postfilter

T = 2.5  # quality position (quality 50 of 6 anchors)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(tiny_codec):
    """The TINY model (seed 0, perturbed, tables built) as loaded from its weights file."""
    return tiny_codec.model


def _image(h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, tuple[int, int]]:
    """A smooth random-ish colour image (1, 3, H, W) in [0, 1] on the 8-bit grid, padded to 64."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = [40 + 170 * xx / max(w - 1, 1), 60 + 140 * yy / max(h - 1, 1),
              128 + 80 * np.sin(xx / 6.0 + seed) * np.cos(yy / 9.0)]
    px = np.stack(planes, axis=0) + rng.normal(0.0, 4.0, (3, h, w))
    px = np.clip(np.rint(px), 0, 255)
    x = torch.from_numpy(px).float().div(255).unsqueeze(0)
    return pad_to_multiple(x, 64)


@pytest.fixture(scope="module")
def image():
    """72x56 image padded to 128x64: the cost is measured on the original region only."""
    return _image(72, 56)


def _fast(model, xp, hw, postfilter=False):
    return rd_cost_true(model, model.analyse(xp, torch.tensor([T])), T, xp, hw, postfilter)


SHORT = Preset(phases=(Phase("p", iters=12, lr=0.05, eval_every=4),))


def test_rd_cost_true_is_real_bits_plus_weighted_mse(model, image):
    xp, hw = image
    cost, res = _fast(model, xp, hw)
    ref = model.compress(xp, T)
    assert res.streams == ref.streams and torch.equal(res.x_hat, ref.x_hat)
    nbytes = sum(len(s) for s in (ref.streams.model_stream, ref.streams.hyper, ref.streams.content))
    a = torch.round(ref.x_hat[..., :72, :56] * 255)
    b = torch.round(xp[..., :72, :56] * 255)
    lam = float(model.lam(torch.tensor([T]))[0])
    expected = 8 * nbytes / (72 * 56) + lam * float(((a - b) ** 2).mean())
    assert cost == pytest.approx(expected, rel=1e-9)
    bpp, psnr = measure(res, xp, hw)
    assert bpp == pytest.approx(8 * nbytes / (72 * 56)) and 0 < psnr < 100


@pytest.mark.parametrize("mode", ["ste", "noise", "sga"])
def test_optimisation_never_worse_than_fast_and_decodes_exactly(model, image, mode):
    xp, hw = image
    fast_cost, _ = _fast(model, xp, hw)
    preset = Preset(phases=(Phase("p", iters=12, lr=0.05, rate_mode=mode, eval_every=4),))
    out = optimize_latents_ex(model, xp, hw, T, preset)
    assert out.stats.initial_cost == pytest.approx(fast_cost, rel=1e-12)
    assert out.stats.final_cost <= fast_cost
    cost, again = rd_cost_true(model, out.latents, T, xp, hw, False)
    assert cost == out.stats.final_cost and again.streams == out.result.streams
    dec = model.decompress(out.result.streams, tuple(xp.shape[-2:]), T, False)
    assert torch.equal(dec, out.result.x_hat)
    assert out.stats.iterations == 12 and out.stats.evaluations == 1 + 3
    assert not any(p.requires_grad is False for p in model.parameters())  # weights restored


def test_random_relaxations_are_deterministic_and_leave_the_global_rng_alone(model, image):
    xp, hw = image
    preset = Preset(phases=(Phase("n", iters=4, lr=0.05, rate_mode="noise", eval_every=4),
                            Phase("g", iters=4, lr=0.05, rate_mode="sga", eval_every=4)))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = optimize_latents_ex(model, xp, hw, T, preset)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(7)
    b = optimize_latents_ex(model, xp, hw, T, preset)
    assert torch.equal(a.latents.y, b.latents.y) and a.result.streams == b.result.streams


def test_optimisation_lowers_the_cost_on_a_perturbed_model(model):
    xp, hw = _image(64, 64, seed=3)
    fast_cost, _ = _fast(model, xp, hw)
    out = optimize_latents_ex(model, xp, hw, T, Preset(
        phases=(Phase("p", iters=30, lr=0.05, eval_every=10),)))
    assert out.stats.final_cost < fast_cost


def test_a_phase_runs_only_from_its_min_lambda(model, image):
    """T = 2.5 is quality 50 of the tiny model's 6 anchors, lambda = sqrt(0.011 * 0.027) = 0.01723:
    a phase from lambda 0.02 is skipped (no iteration), one from 0.0172 runs; a skipped phase
    leaves the budget to the search."""
    xp, hw = image
    from adapix.model import position_to_quality, quality_to_position
    assert position_to_quality(model.cfg, T) == pytest.approx(50.0)
    assert quality_to_position(model.cfg, position_to_quality(model.cfg, 1.7)) == pytest.approx(1.7)
    assert float(model.lam(torch.tensor([T]))) == pytest.approx((0.011 * 0.027) ** 0.5, rel=1e-5)
    phase = Phase("p", iters=4, lr=0.05, eval_every=4, min_lambda=0.02)
    assert Preset(phases=(phase,)).phases_at(0.0199) == () and phase.runs_at(0.02)
    skipped = optimize_latents_ex(model, xp, hw, T, Preset(phases=(phase,)))
    assert skipped.stats.iterations == 0 and skipped.stats.evaluations == 1
    ran = optimize_latents_ex(model, xp, hw, T, Preset(phases=(
        Phase("p", iters=4, lr=0.05, eval_every=4, min_lambda=0.0172),)))
    assert ran.stats.iterations == 4
    both = Preset(phases=(phase,), greedy=GreedySearch(enabled=True, max_evals=2))
    out = optimize_latents_ex(model, xp, hw, T, both, time_budget=60.0)
    assert out.stats.iterations == 0 and out.stats.greedy_tried > 0
    below = Phase("p", iters=4, lr=0.05, eval_every=4, max_lambda=0.0172)  # up to lambda 0.0172
    assert not below.runs_at(0.0173) and below.runs_at(0.0171)
    assert optimize_latents_ex(model, xp, hw, T, Preset(phases=(below,))).stats.iterations == 0


def test_runs_under_no_grad_and_inference_mode(model, image):
    xp, hw = image
    with torch.no_grad():
        a = optimize_latents(model, xp, hw, T, SHORT)
    with torch.inference_mode():
        b = optimize_latents(model, xp.clone(), hw, T, SHORT)
    assert a.streams == b.streams


def test_postfilter_path_decodes_exactly(model, image):
    xp, hw = image
    fast_cost, _ = _fast(model, xp, hw, postfilter=True)
    res = optimize_latents(model, xp, hw, T, SHORT, postfilter=True)
    cost, _ = rd_cost_true(model, model.analyse(xp, torch.tensor([T])), T, xp, hw, True)
    assert cost == fast_cost
    assert torch.equal(model.decompress(res.streams, tuple(xp.shape[-2:]), T, True), res.x_hat)
    # the preset's flag is the default
    res2 = optimize_latents(model, xp, hw, T, Preset(phases=SHORT.phases, postfilter=True))
    assert res2.streams == res.streams


def test_time_budget_zero_returns_the_unoptimised_result(model, image):
    xp, hw = image
    ref = model.compress(xp, T)
    out = optimize_latents_ex(model, xp, hw, T, Preset(
        phases=(Phase("p", iters=1000, lr=0.05),), greedy=GreedySearch(enabled=True)),
        time_budget=0)
    assert out.result.streams == ref.streams and torch.equal(out.result.x_hat, ref.x_hat)
    assert out.stats.iterations == 0 and out.stats.evaluations == out.stats.codings == 1
    assert out.stats.stopped_by_budget


def test_time_budget_stops_gracefully(model, image):
    xp, hw = image
    t0 = time.perf_counter()
    _fast(model, xp, hw)
    # room for the start-up evaluation and some iterations, on a slow or busy machine too
    budget = 1.0 + 5 * (time.perf_counter() - t0)
    t0 = time.perf_counter()
    out = optimize_latents_ex(model, xp, hw, T, Preset(
        phases=(Phase("p", iters=100000, lr=0.02, eval_every=10),)), time_budget=budget)
    seconds = time.perf_counter() - t0
    assert out.stats.stopped_by_budget and 0 < out.stats.iterations < 100000
    assert seconds < budget + 3.0  # at most about one evaluation over, on a busy machine
    fast_cost, _ = _fast(model, xp, hw)
    assert out.stats.final_cost <= fast_cost
    assert out.stats.history[-1][0] == "p"  # the last state was looked at


@pytest.mark.parametrize("fresh_maps,screen,order,merge", [
    (False, True, "msp", 1), (True, True, "msp", 1), (True, False, "msp", 1),
    (False, True, "reverse", 1), (True, True, "reverse", 3), (True, False, "msp", 2)])
def test_greedy_search_never_increases_the_cost(model, image, fresh_maps, screen, order, merge):
    xp, hw = image
    gs = GreedySearch(enabled=True, fraction=0.2, threshold=0.3, chunks=2, max_evals=10,
                      fresh_maps=fresh_maps, screen=screen, curvature=not screen, order=order,
                      merge=merge)
    out = optimize_latents_ex(model, xp, hw, T, Preset(greedy=gs))
    assert out.stats.final_cost <= out.stats.initial_cost
    # chunks are screened; one true evaluation per MSP step with kept chunks
    assert out.stats.greedy_tried > 0
    assert 1 <= out.stats.evaluations <= 1 + min(gs.max_evals, model.msp.decode_steps)
    assert out.stats.greedy_kept <= out.stats.greedy_tried
    costs = [c for _, _, c in out.stats.history]
    assert out.stats.final_cost == min(costs)
    assert torch.equal(model.decompress(out.result.streams, tuple(xp.shape[-2:]), T, False),
                       out.result.x_hat)


def test_greedy_after_phases_and_encoder_finetune(model, image):
    xp, hw = image
    preset = Preset(phases=SHORT.phases, greedy=GreedySearch(enabled=True, max_evals=6),
                    encoder_finetune=True, finetune_iters=3)
    out = optimize_latents_ex(model, xp, hw, T, preset)
    assert out.stats.finetune_iters == 3
    assert [h[0] for h in out.stats.history][:2] == ["start", "finetune"]
    assert out.stats.final_cost <= out.stats.initial_cost
    assert sum(h[0] == "greedy" for h in out.stats.history) <= 6  # true-cost evaluations
    g_a_params = list(model.g_a.parameters())
    assert all(p.requires_grad for p in g_a_params)


def test_encoder_finetune_measures_the_true_cost_on_the_way(model, image):
    """finetune_eval_every: intermediate evaluations (the best state kept, so never worse than
    the start); finetune_lr_final anneals the lr, which changes the steps after the first."""
    xp, hw = image
    preset = Preset(encoder_finetune=True, finetune_iters=5, finetune_lr=1e-2,
                    finetune_eval_every=2)
    out = optimize_latents_ex(model, xp, hw, T, preset)
    assert [it for stage, it, _ in out.stats.history if stage == "finetune"] == [2, 4, 5]
    assert out.stats.final_cost == min(c for _, _, c in out.stats.history)
    annealed = optimize_latents_ex(model, xp, hw, T, replace(preset, finetune_lr_final=0.01))
    costs = [[c for stage, _, c in o.stats.history if stage == "finetune"]
             for o in (out, annealed)]
    assert costs[0][0] != costs[1][0]  # the lr of the second step was already lower
    with pytest.raises(ValueError):
        Preset(finetune_lr_final=0.0)
    with pytest.raises(ValueError):
        Preset(finetune_eval_every=-1)


def test_encoder_finetune_of_h_a_and_syntax_moves_z_and_s(model, image):
    """finetune_modules: h_a and the model stream's encoder are fine-tuned too (copies; the
    model's own modules are untouched), and the result still never loses to the start."""
    xp, hw = image
    before = {n: [p.detach().clone() for p in getattr(model, n).parameters()]
              for n in ("g_a", "h_a", "syntax")}
    outs = {}
    for mods in (("g_a",), ("g_a", "h_a", "syntax")):
        preset = Preset(encoder_finetune=True, finetune_iters=3, finetune_lr=1e-2,
                        finetune_modules=mods)
        outs[mods] = optimize_latents_ex(model, xp, hw, T, preset)
        assert outs[mods].stats.final_cost <= outs[mods].stats.initial_cost
    ft_cost = {m: [c for stage, _, c in o.stats.history if stage == "finetune"]
               for m, o in outs.items()}
    assert all(len(c) == 1 for c in ft_cost.values())  # 3 steps, then one true-cost evaluation
    assert ft_cost[("g_a",)] != ft_cost[("g_a", "h_a", "syntax")]  # z and s came out otherwise
    for n, ps in before.items():
        assert all(torch.equal(p, q) for p, q in zip(ps, getattr(model, n).parameters()))


def test_progress_callback(model, image):
    xp, hw = image
    calls = []
    optimize_latents(model, xp, hw, T, SHORT, progress=lambda *a: calls.append(a))
    assert [c[0] for c in calls] == ["start", "p", "p", "p"]
    best = [c[2] for c in calls]
    assert best == sorted(best, reverse=True)  # the best cost never goes up


def test_proxy_loss_is_differentiable_in_all_latents(model, image):
    xp, hw = image
    lat = model.analyse(xp, torch.tensor([T]))
    leaves = [v.detach().clone().requires_grad_(True) for v in (lat.y, lat.z, lat.s)]
    from adapix.model import Latents

    for mode in ("ste", "noise", "sga"):
        loss, bpp, mse = proxy_loss(model, Latents(*leaves), T, xp, hw, False, mode, 0.3)
        grads = torch.autograd.grad(loss, leaves)
        assert all(torch.isfinite(g).all() for g in grads)
        assert grads[0].abs().sum() > 0 and bpp > 0 and mse > 0


def test_sga_round_is_between_floor_and_ceil_and_hardens():
    torch.manual_seed(0)
    x = torch.linspace(-3, 3, 1001)
    for tau in (0.5, 0.01):
        r = sga_round(x, tau)
        assert (r >= torch.floor(x) - 1e-6).all() and (r <= torch.floor(x) + 1 + 1e-6).all()
    cold = sga_round(x, 1e-3)
    far = (x - torch.round(x)).abs() < 0.3
    assert torch.allclose(cold[far], torch.round(x)[far], atol=1e-3)


def test_phase_validation():
    with pytest.raises(ValueError):
        Phase("p", 10, 0.01, rate_mode="gumbel")
    with pytest.raises(ValueError):
        Phase("p", 10, 0.01, optimize=("w",))
    with pytest.raises(ValueError):
        Phase("p", 10, 0.01, precision="fp16")
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            Phase("p", 10, 0.01, min_lambda=bad)
    with pytest.raises(ValueError):
        Phase("p", 10, 0.01, min_lambda=0.02, max_lambda=0.02)
    for bad in ({"precision": "fp16"}, {"fraction": 0.0}, {"threshold": 0.7}, {"chunks": 0},
                {"passes": 0}, {"verify_every": 0}, {"max_evals": 0}, {"time_share": 1.5},
                {"order": "random"}, {"merge": 0}):
        with pytest.raises(ValueError):
            GreedySearch(enabled=True, **bad)
    p = Phase("p", 11, 0.1, lr_final=0.1, tau=(0.5, 0.05))
    assert p.lr_at(0) == pytest.approx(0.1) and p.lr_at(10) == pytest.approx(0.01)
    assert p.tau_at(0) == pytest.approx(0.5) and p.tau_at(10) == pytest.approx(0.05)
    assert p.lr_at_progress(1.0) == pytest.approx(0.01) and p.lr_at_progress(2.0) == p.lr_at(10)
    assert p.tau_at_progress(0.5) == pytest.approx(p.tau_at(5))
    assert not Preset().optimizes and Preset(greedy=GreedySearch(True)).optimizes
    for bad in ({"finetune_iters": -1}, {"finetune_lr": 0.0}, {"finetune_share": 0.0},
                {"finetune_share": 1.5}, {"finetune_max_lambda": 0.0},
                {"finetune_modules": ("h_a",)}, {"finetune_modules": ("g_a", "g_s")},
                {"finetune_modules": ["g_a"]}):
        with pytest.raises(ValueError):
            Preset(encoder_finetune=True, **bad)
    ft = Preset(encoder_finetune=True, finetune_max_lambda=0.02)
    assert ft.finetunes_at(0.019) and not ft.finetunes_at(0.02) and not ft.finetunes_at(0.1)
    assert not Preset().finetunes_at(0.01)  # off unless asked for
    assert not Preset(encoder_finetune=True, finetune_iters=0).finetunes_at(0.01)
    qo = Preset(quality_offsets=(-4.0,), quality_max_lambda=0.02)
    assert qo.offsets_at(0.019) == (-4.0,) and qo.offsets_at(0.02) == () and qo.optimizes
    assert Preset(quality_offsets=(-4.0,)).offsets_at(0.16) == (-4.0,)
    with pytest.raises(ValueError):
        Preset(quality_max_lambda=0.0)


# ---- encode_to_target --------------------------------------------------------------------------
def _codec_curve(calls):
    def encode_at(q):
        calls.append(q)
        return 0.1 + q / 50.0, 25.0 + q / 5.0, f"data@{q:.3f}"
    return encode_at


def test_encode_to_target_bpp():
    calls = []
    r = encode_to_target(_codec_curve(calls), target_bpp=1.0)
    assert r.met and r.bpp <= 1.0 and r.bpp >= 0.99 * 1.0 - 0.01  # within tolerance
    assert r.quality == pytest.approx(45.0, abs=0.6)
    assert r.payload == f"data@{r.quality:.3f}" and r.evaluations == len(calls) <= 12


def test_encode_to_target_psnr():
    r = encode_to_target(_codec_curve([]), target_psnr=35.0)
    assert r.met and 35.0 <= r.psnr <= 35.0 + 0.1
    assert r.quality == pytest.approx(50.0, abs=0.6)


def test_encode_to_target_unreachable_and_trivial_targets():
    low = encode_to_target(_codec_curve([]), target_bpp=0.05)  # below quality 0
    assert not low.met and low.quality == 0.0
    high = encode_to_target(_codec_curve([]), target_psnr=60.0)  # above quality 100
    assert not high.met and high.quality == 100.0
    easy = encode_to_target(_codec_curve([]), target_bpp=10.0)  # everything fits
    assert easy.met and easy.quality == 100.0
    with pytest.raises(ValueError):
        encode_to_target(_codec_curve([]))
    with pytest.raises(ValueError):
        encode_to_target(_codec_curve([]), target_bpp=1.0, target_psnr=30.0)


def test_encode_to_target_with_the_real_encoder(model, image):
    from adapix.model import quality_to_position

    xp, hw = image

    def encode_at(q):
        res = model.compress(xp, quality_to_position(model.cfg, q))
        return (*measure(res, xp, hw), res)

    lo_bpp = encode_at(0.0)[0]
    hi_bpp = encode_at(100.0)[0]
    target = float(np.mean([lo_bpp, hi_bpp]))
    r = encode_to_target(encode_at, target_bpp=target)
    assert r.met and r.bpp <= target and r.payload is not None


# ---- speed-ups and time budget (issue 5) -------------------------------------------------------
class FakeClock:
    """A clock that advances by ``step`` seconds at every reading: the optimisation sees time
    pass at a fixed rate whatever the machine does, so budget tests are not flaky."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.mark.parametrize("greedy", [False, True])
def test_time_budget_with_a_fake_clock_is_respected_exactly(model, image, greedy):
    xp, hw = image
    budget = 40.0
    clock = FakeClock(0.5)
    preset = Preset(phases=(Phase("a", iters=1000, lr=0.05, eval_every=100),
                            Phase("b", iters=1000, lr=0.02, rate_mode="sga", eval_every=100)),
                    greedy=GreedySearch(enabled=greedy, fraction=0.3, threshold=0.4,
                                        max_evals=1000))
    out = optimize_latents_ex(model, xp, hw, T, preset, time_budget=budget, clock=clock)
    assert out.stats.stopped_by_budget
    assert 0 < out.stats.iterations < 2000
    # by the fake clock, whose every reading costs a step: the run ends on time up to a few
    # readings, and uses most of the budget
    assert 0.75 * budget <= out.stats.seconds <= budget + 4 * clock.step
    stages = [h[0] for h in out.stats.history]
    assert stages[0] == "start" and "a" in stages and "b" in stages  # both phases got a share
    fast_cost, _ = _fast(model, xp, hw)
    assert out.stats.final_cost <= fast_cost
    assert torch.equal(model.decompress(out.result.streams, tuple(xp.shape[-2:]), T, False),
                       out.result.x_hat)


def test_encoder_finetune_stops_at_its_share_of_the_budget(model, image):
    """The fine-tuning of g_a, its closing evaluation included, ends by ``finetune_share`` of the
    budget; the phase after it gets the rest, and the run ends on time."""
    xp, hw = image
    budget, clock = 40.0, FakeClock(0.5)
    finetune_end = []

    def progress(stage, it, cost):
        if stage == "finetune":
            finetune_end.append(clock.now)

    preset = Preset(phases=(Phase("a", iters=1000, lr=0.05, eval_every=100),),
                    encoder_finetune=True, finetune_iters=10000, finetune_share=0.25)
    out = optimize_latents_ex(model, xp, hw, T, preset, time_budget=budget, clock=clock,
                              progress=progress)
    assert 1 <= out.stats.finetune_iters < 10000
    assert len(finetune_end) == 1 and finetune_end[0] <= 0.25 * budget + 2 * clock.step
    stages = [h[0] for h in out.stats.history]
    assert stages[:2] == ["start", "finetune"] and "a" in stages
    assert out.stats.seconds <= budget + 4 * clock.step
    assert out.stats.final_cost <= out.stats.initial_cost


def test_encoder_finetune_only_below_its_lambda(model, image):
    xp, hw = image
    lam = float(model.lam(torch.tensor([T])))
    for max_lambda, runs in ((lam * 0.9, False), (lam * 1.1, True)):
        preset = Preset(encoder_finetune=True, finetune_iters=2, finetune_max_lambda=max_lambda)
        out = optimize_latents_ex(model, xp, hw, T, preset)
        assert (out.stats.finetune_iters == 2) is runs
        assert ("finetune" in [h[0] for h in out.stats.history]) is runs


def test_the_search_after_the_finetuning_is_its_own(model, image):
    """Preset.greedy_after_finetune runs where the fine-tuning runs, ``greedy`` elsewhere."""
    xp, hw = image
    lam = float(model.lam(torch.tensor([T])))
    search = GreedySearch(enabled=True, fraction=0.3, threshold=0.5, chunks=2)
    for max_lambda, after in ((lam * 0.9, False), (lam * 1.1, True)):
        preset = Preset(encoder_finetune=True, finetune_iters=1, finetune_max_lambda=max_lambda,
                        greedy_after_finetune=search)
        assert preset.greedy_at(lam) == (search if after else GreedySearch())
        out = optimize_latents_ex(model, xp, hw, T, preset)
        assert (out.stats.greedy_tried > 0) is after
        assert out.stats.final_cost <= out.stats.initial_cost
    with pytest.raises(ValueError):
        Preset(greedy_after_finetune={"chunks": 8})


def test_greedy_budget_reserves_time_for_slow_map_recomputation(model, image, monkeypatch):
    """Recomputing the coding maps can cost more than a true-cost evaluation (a slow CPU): the
    search keeps time for it, so it does not start one it cannot finish within the budget."""
    from adapix.optimize import greedy as greedy_mod

    xp, hw = image
    clock = FakeClock(0.01)
    real = greedy_mod._coding_maps

    def slow_maps(*args, **kwargs):
        clock.now += 5.0  # each recomputation takes 5 s by the clock
        return real(*args, **kwargs)

    monkeypatch.setattr(greedy_mod, "_coding_maps", slow_maps)
    budget = 12.0
    preset = Preset(greedy=GreedySearch(enabled=True, fraction=0.5, threshold=0.5, chunks=2,
                                        verify_every=1, fresh_maps=True, passes=3,
                                        max_evals=1000))
    out = optimize_latents_ex(model, xp, hw, T, preset, time_budget=budget, clock=clock)
    assert out.stats.stopped_by_budget
    assert out.stats.seconds <= budget + 0.5


def test_phase_cut_short_by_its_deadline_ends_its_schedule(model, image, monkeypatch):
    """Under a budget the learning rate is annealed over the time available: the last step of a
    phase stopped by time uses (nearly) the final learning rate."""
    from adapix.optimize import phases as phases_mod

    xp, hw = image
    seen = []
    real = phases_mod.proxy_loss

    def spy(*args, **kwargs):
        seen.append(kwargs.get("tau", args[7] if len(args) > 7 else None))
        return real(*args, **kwargs)

    monkeypatch.setattr(phases_mod, "proxy_loss", spy)
    phase = Phase("p", iters=10000, lr=0.05, rate_mode="sga", tau=(0.5, 0.05), eval_every=10000)
    out = optimize_latents_ex(model, xp, hw, T, Preset(phases=(phase,)), time_budget=30.0,
                              clock=FakeClock(0.5))
    assert out.stats.stopped_by_budget and 1 < out.stats.iterations < 10000
    assert seen[0] == pytest.approx(0.5, rel=0.2) and seen[-1] == pytest.approx(0.05)


@pytest.mark.parametrize("precision", ["bf16", "fp32", "fp32cl"])
def test_proxy_synthesis_matches_the_model(model, image, precision):
    from adapix.optimize.proxy import ProxySynthesis, _frozen

    xp, _ = image
    lat = model.analyse(xp, torch.tensor([T]))
    with _frozen(model):
        y = torch.round(lat.y).detach().requires_grad_(True)
        s = torch.round(lat.s).detach().requires_grad_(True)
        ref = model.synthesize(y, s, torch.tensor([T]), True)
        (gy_ref, gs_ref) = torch.autograd.grad(((ref - xp) ** 2).sum(), (y, s))
        synth = ProxySynthesis(model, T, True, precision)
        out = synth(y, s)
        (gy, gs) = torch.autograd.grad(((out - xp) ** 2).sum(), (y, s))
    assert out.dtype == torch.float32 and out.shape == ref.shape
    tol = 0.02 if precision == "bf16" else 1e-5
    assert (out - ref).abs().max() < tol
    for a, b in ((gy, gy_ref), (gs, gs_ref)):
        cos = torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)
        assert cos > (0.99 if precision == "bf16" else 0.99999)


@pytest.mark.parametrize("part,changes,std", [
    ("blocks", {"rate_modulation": True, "synthesis_blocks": 2}, 0.05),
    ("head", {"synthesis_head": 8}, 1.0),
])
@pytest.mark.parametrize("precision", ["bf16", "fp32cl"])
def test_proxy_synthesis_runs_every_part_of_g_s(make_model, image, precision, part, changes, std):
    """model.synthesis_blocks and model.synthesis_head: the proxy's g_s has the same residual
    blocks and full-resolution head as the model's (with the part's weights redrawn, a proxy
    without it would be off by far more than the tolerance)."""
    from adapix.optimize.proxy import ProxySynthesis, _frozen

    deep = make_model(cfg=replace(TINY, **changes))
    module = getattr(deep.g_s, part)
    convs = ([c for c in module.modules() if isinstance(c, torch.nn.Conv2d)] if part == "blocks"
             else [module.out])  # the head's last convolution: its output's size
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for conv in convs:
            conv.weight.normal_(0, std, generator=gen)
    xp, _ = image
    with _frozen(deep):
        lat = deep.analyse(xp, torch.tensor([T]))
        y, s = torch.round(lat.y), torch.round(lat.s)
        ref = deep.synthesize(y, s, torch.tensor([T]), True)
        setattr(deep.g_s, part, None)
        without = deep.synthesize(y, s, torch.tensor([T]), True)
        setattr(deep.g_s, part, module)
        out = ProxySynthesis(deep, T, True, precision)(y, s)
    tol = 0.02 if precision == "bf16" else 1e-5
    assert (without - ref).abs().max() > 10 * tol
    assert (out - ref).abs().max() < tol


def test_proxy_synthesis_refuses_a_g_s_part_it_does_not_run(make_model):
    """A module added to g_s that the proxy does not rebuild is an error, not a silent mismatch."""
    from adapix.optimize.proxy import ProxySynthesis

    odd = make_model()
    odd.g_s.extra = torch.nn.Conv2d(3, 3, 1)
    for precision in ("bf16", "fp32cl"):
        with pytest.raises(TypeError, match="g_s.extra.weight"):
            ProxySynthesis(odd, T, False, precision)
    assert ProxySynthesis(odd, T, False, "fp32").precision == "fp32"  # runs g_s itself


@pytest.mark.parametrize("cin,cout,h,w", [(4, 3, 5, 7), (6, 2, 1, 1), (3, 5, 8, 2)])
def test_subpixel_weight_computes_the_transposed_convolution(cin, cout, h, w):
    from adapix.optimize.proxy import subpixel_weight

    gen = torch.Generator().manual_seed(cin * 100 + h)
    x = torch.randn(1, cin, h, w, generator=gen, dtype=torch.float64)
    wt = torch.randn(cin, cout, 5, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    ref = torch.nn.functional.conv_transpose2d(x, wt, stride=2, padding=2, output_padding=1)
    alt = torch.nn.functional.pixel_shuffle(
        torch.nn.functional.conv2d(x, subpixel_weight(wt), padding=1), 2)
    assert alt.shape == ref.shape and torch.allclose(alt, ref, atol=1e-12)
    (g_ref,) = torch.autograd.grad(ref.sum(), wt)  # differentiable in the weight (s moves it)
    (g_alt,) = torch.autograd.grad(alt.sum(), wt)
    assert torch.allclose(g_alt, g_ref, atol=1e-12)


def test_auto_precision_is_bf16_only_where_bf16_is_fast(model, monkeypatch):
    from adapix.optimize import proxy as proxy_mod

    for fast, expected in ((True, "bf16"), (False, "fp32cl")):
        monkeypatch.setattr(proxy_mod, "bf16_is_fast", lambda fast=fast: fast)
        assert proxy_mod.ProxySynthesis(model, T, False, "auto").precision == expected
    with pytest.raises(ValueError, match="precision"):
        proxy_mod.ProxySynthesis(model, T, False, "fp16")


def test_proxy_with_cached_hyper_equals_the_full_proxy(model, image):
    from adapix.model import Latents
    from adapix.optimize.proxy import _factorized_bits

    xp, hw = image
    lat = model.analyse(xp, torch.tensor([T]))
    with torch.no_grad():
        z_hat = torch.round(lat.z)
        hyper = (_factorized_bits(model.z_prior, z_hat), model.h_s(z_hat))
    y = lat.y.detach().clone().requires_grad_(True)
    full, bpp_a, _ = proxy_loss(model, Latents(y, lat.z.detach(), lat.s.detach()), T, xp, hw,
                                False, "ste")
    cached, bpp_b, _ = proxy_loss(model, Latents(y, lat.z.detach(), lat.s.detach()), T, xp, hw,
                                  False, "ste", hyper=hyper)
    assert cached.item() == pytest.approx(full.item(), rel=1e-6)
    assert bpp_b.item() == pytest.approx(bpp_a.item(), rel=1e-6)
    (g1,) = torch.autograd.grad(full, y)
    (g2,) = torch.autograd.grad(cached, y)
    assert torch.allclose(g1, g2)


@pytest.mark.parametrize("optimize,precision", [(("y", "s"), "bf16"), (("y",), "fp32"),
                                                (("y", "z", "s"), "auto")])
def test_variants_never_lose_and_decode_exactly(model, image, optimize, precision):
    xp, hw = image
    fast_cost, _ = _fast(model, xp, hw)
    preset = Preset(phases=(Phase("p", iters=8, lr=0.05, optimize=optimize, precision=precision,
                                  eval_every=8),))
    out = optimize_latents_ex(model, xp, hw, T, preset)
    assert out.stats.final_cost <= fast_cost and out.stats.iterations == 8
    auto = "bf16" if bf16_is_fast() else "fp32cl"
    assert out.stats.proxy_precision == (auto if precision == "auto" else precision)
    if "z" not in optimize:
        assert torch.equal(out.latents.z, model.analyse(xp, torch.tensor([T])).z)
    assert torch.equal(model.decompress(out.result.streams, tuple(xp.shape[-2:]), T, False),
                       out.result.x_hat)


def test_infinite_budget_is_no_budget(model, image):
    xp, hw = image
    out = optimize_latents_ex(model, xp, hw, T, SHORT, time_budget=float("inf"))
    assert out.stats.iterations == 12 and not out.stats.stopped_by_budget


def test_postfilter_choice_turns_off_a_filter_that_hurts(make_model, image):
    xp, hw = image
    model = harm_postfilter(make_model(0))
    on_cost, _ = _fast(model, xp, hw, postfilter=True)
    off_cost, _ = _fast(model, xp, hw, postfilter=False)
    assert off_cost < on_cost  # the premise: this filter hurts
    search = GreedySearch(enabled=True, max_evals=3)
    out = optimize_latents_ex(model, xp, hw, T, Preset(greedy=search, postfilter=True,
                                                       postfilter_choice=True))
    assert out.result.postfilter is False
    assert rd_cost_of(model, out.result, xp, hw, T) <= off_cost  # never worse than fast
    assert [h[0] for h in out.stats.history[:2]] == ["start", "start-nopf"]
    # the pair was coded once and compared twice; every other state had a coding of its own
    assert out.stats.evaluations == len(out.stats.history) == out.stats.codings + 1
    dec = model.decompress(out.result.streams, tuple(xp.shape[-2:]), T, postfilter=False)
    assert torch.equal(dec, out.result.x_hat)
    # without the choice (preset or caller), the flag stays as given
    kept = optimize_latents(model, xp, hw, T, Preset(greedy=search, postfilter=True))
    assert kept.postfilter is True
    forced = optimize_latents(model, xp, hw, T, Preset(greedy=search, postfilter=True,
                                                       postfilter_choice=True),
                              choose_postfilter=False)
    assert forced.postfilter is True


def test_postfilter_choice_keeps_a_filter_that_does_not_hurt(make_model, image):
    xp, hw = image
    model = make_model(0)
    with torch.no_grad():  # an identity post-filter: both flags cost the same, "on" is kept
        model.postfilter.c3.weight.zero_()
        model.generator.post.weight.zero_()
        model.generator.post.bias.zero_()
    out = optimize_latents_ex(model, xp, hw, T, Preset(
        greedy=GreedySearch(enabled=True, max_evals=2), postfilter=True, postfilter_choice=True))
    assert out.stats.history[1][0] == "start-nopf"
    assert out.stats.history[0][2] == out.stats.history[1][2]
    assert out.result.postfilter is True


@pytest.mark.parametrize("order,merge", [("msp", 1), ("reverse", 1), ("reverse", 2)])
def test_greedy_search_visits_the_steps_in_its_order(model, image, monkeypatch, order, merge):
    import adapix.optimize.greedy as greedy_mod

    seen = []
    real = greedy_mod._candidates

    def spy(run, gs, step, *args, **kwargs):
        seen.append(step)
        return real(run, gs, step, *args, **kwargs)

    monkeypatch.setattr(greedy_mod, "_candidates", spy)
    xp, hw = image
    gs = GreedySearch(enabled=True, fraction=0.2, threshold=0.3, max_evals=100, passes=2,
                      order=order, merge=merge)
    optimize_latents_ex(model, xp, hw, T, Preset(greedy=gs))
    steps = model.msp.steps()
    one = steps[::-1] if order == "reverse" else steps
    assert seen == one * 2  # merged blocks still visit every step, in the same order


def test_merged_blocks_share_their_coding_maps(model, image, monkeypatch):
    """With ``merge`` = all steps, a pass recomputes the coding maps once (fresh maps are
    recomputed per changed block, not per step)."""
    import adapix.optimize.greedy as greedy_mod

    calls = []
    real = greedy_mod._coding_maps
    monkeypatch.setattr(greedy_mod, "_coding_maps",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    xp, hw = image
    n = len(model.msp.steps())
    for merge, most in ((1, n), (n, 1)):
        calls.clear()
        gs = GreedySearch(enabled=True, fraction=0.2, threshold=0.3, max_evals=100,
                          fresh_maps=True, merge=merge)
        out = optimize_latents_ex(model, xp, hw, T, Preset(greedy=gs))
        assert 1 <= len(calls) <= most
        assert out.stats.final_cost <= out.stats.initial_cost


# ---- quality mode decision (Preset.quality_offsets) ------------------------------------------
def test_offset_positions_are_header_qualities(model):
    from adapix.model import position_to_quality, quality_to_position
    from adapix.optimize.optimizer import _offset_positions

    t = quality_to_position(model.cfg, 39.29)
    got = _offset_positions(model, t, (-4.0, -4.0, 0.004, 70.0, -50.0))
    qs = [position_to_quality(model.cfg, p) for p in got]
    assert qs == pytest.approx([35.29, 100.0, 0.0])  # repeats, t itself dropped; clamped
    for q, p in zip(qs, got):  # exactly what a decoder computes from the header's quality
        assert p == quality_to_position(model.cfg, round(q, 2))


def test_quality_decision_keeps_the_cheapest_at_the_asked_lambda(model, image):
    """Every candidate quality is priced at the asked quality's lambda; the run codes at the
    cheapest, the result says where, and it decodes exactly there."""
    from adapix.model import position_to_quality, quality_to_position

    xp, hw = image
    lam = float(model.lam(torch.tensor([T])))
    offsets = (-20.0, -8.0, 8.0)
    q = position_to_quality(model.cfg, T)
    costs = {T: _fast(model, xp, hw)[0]}
    for off in offsets:
        to = quality_to_position(model.cfg, round(q + off, 2))
        res = model.compress(xp, to)
        costs[to] = rd_cost_of(model, res, xp, hw, to, lam=lam)
    cheapest = min(costs, key=costs.get)
    preset = Preset(greedy=GreedySearch(enabled=True, max_evals=4), quality_offsets=offsets)
    out = optimize_latents_ex(model, xp, hw, T, preset)
    assert [h[0].startswith("quality") for h in out.stats.history[1:4]] == [True] * 3
    assert out.stats.history[0][2] == pytest.approx(costs[T])
    assert out.result.t == cheapest and cheapest != T  # a lower quality is cheaper here
    assert out.stats.final_cost <= min(costs.values()) <= out.stats.initial_cost
    assert out.stats.final_cost == pytest.approx(
        rd_cost_of(model, out.result, xp, hw, T))  # priced at the asked quality's lambda
    dec = model.decompress(out.result.streams, tuple(xp.shape[-2:]), out.result.t)
    assert torch.equal(dec, out.result.x_hat)
    kept = optimize_latents(model, xp, hw, T, preset, choose_quality=False)
    assert kept.t == T  # the tiles of a file share the header's quality
    with pytest.raises(ValueError):
        Preset(quality_offsets=(0.0,))
    with pytest.raises(ValueError):
        Preset(quality_offsets=(float("nan"),))
