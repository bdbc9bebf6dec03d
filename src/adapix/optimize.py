"""Encoder-side, per-image rate-distortion optimisation ("online" RD optimisation, issue 5).

The decoder is a fixed function of the three coded streams, so the encoder is free to send *any*
latents it likes: searching, for one image, for the latents that minimise the true
rate-distortion cost changes neither the bitstream format nor the decoder. Every result of this
module is produced by :meth:`adapix.model.AdapixModel.compress_latents`, i.e. the real coding
path, and therefore decodes with any Adapix decoder holding the same weights.

Ideas, and where they come from:

* **Latent overfitting** (Campos et al., "Content adaptive optimization for neural image
  compression", CVPR workshops 2019; also Yang et al. 2020 below): starting from the
  amortised inference ``g_a(x)``, the continuous latents ``y`` (content), ``z`` (hyper) are refined
  by gradient descent on ``R + lambda * 255^2 * MSE`` for this one image, with the model weights
  frozen. The rate of the rounded latents is made differentiable by straight-through rounding
  (``rate_mode="ste"``), by additive uniform noise (``"noise"``) or by
  **stochastic Gumbel annealing** (``"sga"``; Yang, Bamler and Mandt, "Improving inference for
  neural image compression", NeurIPS 2020), which relaxes each rounding decision into a soft
  choice between floor and ceil whose temperature is annealed to zero.
* **Continuous mode decision / model stream**: the model stream ``s`` selects (through the weight
  generator) the image-specific last synthesis layer and post-filter, following the neural
  data-dependent transform of Wang et al., "Neural Data-Dependent Transform for Learned Image
  Compression", CVPR 2022. Optimising ``s`` jointly with ``y`` and ``z`` is the encoder's mode
  decision: it picks the decoder that best fits this image, at the price of its rate.
* **Greedy rounding search** (the rate-distortion optimised quantisation idea of video coders,
  applied to the rounding decisions that SGA relaxes): after the continuous search, rounding
  decisions of ``y`` that sit nearest a rounding boundary, and whose flip a first-order estimate
  predicts to pay off, are flipped to the other integer, chunk by chunk in MSP decoding order;
  a chunk is kept only if the *true* cost drops.
* **Encoder fine-tuning** (optional): the analysis transform ``g_a`` -- which the decoder never
  runs -- is fine-tuned on the image before the latent phases, giving a better starting point.

Costs. The optimisation uses a differentiable proxy (ideal code lengths of the un-snapped
Gaussian/factorized models, MSE in float). The *true* cost (:func:`rd_cost_true`) codes the
latents for real: ``8 * bytes of the three streams / pixels + lambda(t) * 255^2 * MSE`` of the
8-bit-rounded reconstruction on the original (un-padded) region. The true cost is evaluated at
the start, every ``Phase.eval_every`` iterations and at the end of every phase, and the best
state is kept, so the result is never worse (in true cost) than no optimisation. (The real size
moves in 32-bit ANS words per stream; among equal true costs the ideal code length decides.)

Shapes (padded image ``x`` (1, 3, Hp, Wp) in [0, 1], ``hw`` = original (H, W)):
``y`` (1, M, Hp/16, Wp/16), ``z`` (1, Nh, Hp/64, Wp/64), ``s`` (1, D).

Also here: :func:`encode_to_target`, a bisection over the quality knob that reaches a target
rate (bpp) or quality (PSNR) with any encoder callable.
"""

from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .entropy.factorized import FactorizedPrior, round_ste
from .entropy.gaussian import gaussian_likelihood
from .entropy.msp import Step
from .model import AdapixModel, CodingResult, Latents

RATE_MODES = ("ste", "noise", "sga")
RANDOM_SEED = 0  # seed of the random relaxations (noise, SGA) during one optimisation
LATENT_NAMES = ("y", "z", "s")


# ---- presets ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Phase:
    """One gradient phase of latent optimisation (Adam on the continuous latents).

    * ``rate_mode``: how the rounding is relaxed: ``"ste"`` (rate of the actually rounded
      values, straight-through gradient), ``"noise"`` (additive U(-1/2, 1/2) for the rate, as in
      training) or ``"sga"`` (stochastic Gumbel annealing, temperature ``tau[0] -> tau[1]``,
      exponential schedule).
    * ``optimize``: which latents move, a subset of ``("y", "z", "s")``.
    * learning rate: cosine-annealed from ``lr`` to ``lr * lr_final``.
    * ``eval_every``: the true cost is measured every that many iterations (and at the end).
    """

    name: str
    iters: int
    lr: float
    rate_mode: str = "ste"
    optimize: tuple[str, ...] = LATENT_NAMES
    lr_final: float = 0.1
    tau: tuple[float, float] = (0.5, 0.05)
    eval_every: int = 25

    def __post_init__(self) -> None:
        if self.rate_mode not in RATE_MODES:
            raise ValueError(f"rate_mode must be one of {RATE_MODES}, got {self.rate_mode!r}")
        bad = set(self.optimize) - set(LATENT_NAMES)
        if bad or not self.optimize:
            raise ValueError(f"optimize must be a non-empty subset of {LATENT_NAMES}, got "
                             f"{self.optimize!r}")
        if self.iters < 0 or self.lr <= 0 or self.eval_every < 1:
            raise ValueError("iters must be >= 0, lr > 0 and eval_every >= 1")

    def lr_at(self, i: int) -> float:
        """Cosine annealing of the learning rate over the phase."""
        if self.iters <= 1:
            return self.lr
        c = 0.5 * (1 + math.cos(math.pi * i / (self.iters - 1)))
        return self.lr * (self.lr_final + (1 - self.lr_final) * c)

    def tau_at(self, i: int) -> float:
        """SGA temperature: exponential from tau[0] to tau[1]."""
        if self.iters <= 1:
            return self.tau[1]
        a = i / (self.iters - 1)
        return self.tau[0] * (self.tau[1] / self.tau[0]) ** a


@dataclass(frozen=True)
class GreedySearch:
    """Greedy search over the rounding decisions of y (after the gradient phases).

    In MSP step order, the elements of a step whose residual ``y - mu`` lies within
    ``threshold`` of a rounding boundary (distance in quantisation steps, at most ``fraction`` of
    the step's elements, nearest first) are candidates. A first-order screen keeps those whose
    flip is predicted to lower the cost (exact rate change of the element under its Gaussian +
    distortion gradient); they are sorted by predicted gain and tried in ``chunks`` chunks. A
    chunk is flipped at once (vectorised) and kept only if the true cost drops. At most
    ``max_evals`` true-cost evaluations are spent.
    """

    enabled: bool = False
    fraction: float = 0.05
    threshold: float = 0.2
    chunks: int = 3
    max_evals: int = 48


@dataclass(frozen=True)
class Preset:
    """What an encoder profile does: gradient phases, then the greedy search.

    ``postfilter`` asks for the decoder post-filter (the codec enables it only for weights with a
    trained post-filter). ``encoder_finetune`` fine-tunes a copy of ``g_a`` on the image for
    ``finetune_iters`` Adam steps (lr ``finetune_lr``) before the latent phases.
    """

    phases: tuple[Phase, ...] = ()
    greedy: GreedySearch = field(default_factory=GreedySearch)
    postfilter: bool = False
    encoder_finetune: bool = False
    finetune_iters: int = 30
    finetune_lr: float = 1e-4

    @property
    def optimizes(self) -> bool:
        """True if the preset does any encoder-side optimisation."""
        return bool(self.phases) or self.greedy.enabled or self.encoder_finetune


# ---- costs -----------------------------------------------------------------------------------
def stream_bits(result: CodingResult) -> int:
    """Real size of the three coded streams, in bits (container overhead excluded)."""
    s = result.streams
    return 8 * (len(s.model_stream) + len(s.hyper) + len(s.content))


def _crop(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return x[..., : int(hw[0]), : int(hw[1])]


def _lam(model: AdapixModel, t: float) -> float:
    return float(model.lam(torch.tensor([float(t)]))[0])


def _sse255(x_hat: torch.Tensor, x: torch.Tensor, hw: tuple[int, int]) -> float:
    """Mean squared error on the 8-bit scale between 8-bit-rounded crops (what a decoder shows)."""
    a = torch.round(_crop(x_hat, hw).float().clamp(0, 1) * 255)
    b = torch.round(_crop(x, hw).float().clamp(0, 1) * 255)
    return float(((a - b) ** 2).mean())


def rd_cost_of(model: AdapixModel, result: CodingResult, x: torch.Tensor, hw: tuple[int, int],
               t: float) -> float:
    """True RD cost of an already coded result (see :func:`rd_cost_true`)."""
    pixels = int(hw[0]) * int(hw[1])
    return stream_bits(result) / pixels + _lam(model, t) * _sse255(result.x_hat, x, hw)


def rd_cost_true(model: AdapixModel, lat: Latents, t: float, x: torch.Tensor,
                 hw: tuple[int, int], postfilter: bool) -> tuple[float, CodingResult]:
    """True RD cost of coding ``lat``: codes for real with ``model.compress_latents``.

    cost = 8 * bytes(streams) / (H * W) + lambda(t) * 255^2 * MSE, where MSE (on [0, 1]) is that
    of the 8-bit-rounded reconstruction against the 8-bit original on the original region ``hw``
    = (H, W) of the padded ``x`` (1, 3, Hp, Wp). Returns (cost, the CodingResult).
    """
    res = model.compress_latents(lat, t, postfilter)
    return rd_cost_of(model, res, x, hw, t), res


def measure(result: CodingResult, x: torch.Tensor, hw: tuple[int, int]) -> tuple[float, float]:
    """(bpp of the three streams, PSNR in dB of the 8-bit reconstruction) on the region hw."""
    mse = _sse255(result.x_hat, x, hw)
    psnr = float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)
    return stream_bits(result) / (int(hw[0]) * int(hw[1])), psnr


@dataclass
class _State:
    """A candidate: its latents (detached), true cost, estimated cost (tie-break), result."""

    lat: Latents
    cost: float
    est_cost: float
    result: CodingResult

    def better_than(self, other: "_State") -> bool:
        # The real size moves in 32-bit words per stream; the ideal code length breaks ties.
        return (self.cost, self.est_cost) < (other.cost, other.est_cost)


@dataclass
class OptimizeStats:
    """What :func:`optimize_latents_ex` did (for reports and tests)."""

    initial_cost: float = 0.0
    final_cost: float = 0.0
    iterations: int = 0
    evaluations: int = 0
    greedy_tried: int = 0
    greedy_kept: int = 0
    greedy_flips: int = 0
    finetune_iters: int = 0
    seconds: float = 0.0
    stopped_by_budget: bool = False
    history: list[tuple[str, int, float]] = field(default_factory=list)  # (stage, iter, cost)


@dataclass
class OptimizeOutcome:
    result: CodingResult
    latents: Latents
    stats: OptimizeStats


# ---- differentiable proxy --------------------------------------------------------------------
def sga_round(x: torch.Tensor, tau: float) -> torch.Tensor:
    """Stochastic Gumbel annealing (Yang et al. 2020): a soft, random choice between floor(x) and
    floor(x) + 1, with logits -atanh(distance) / tau; tends to hard rounding as tau -> 0."""
    eps = 1e-5
    fl = torch.floor(x).detach()
    d_fl = (x - fl).clamp(eps, 1 - eps)
    d_ce = (fl + 1 - x).clamp(eps, 1 - eps)
    logits = torch.stack([-torch.atanh(d_fl), -torch.atanh(d_ce)], dim=-1) / tau
    w = F.gumbel_softmax(logits, tau=tau, hard=False, dim=-1)
    return fl + w[..., 1]


def _relax(v: torch.Tensor, mode: str, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(value seen by the decoder path, value whose likelihood is the rate)."""
    if mode == "sga":
        soft = sga_round(v, tau)
        return soft, soft
    hard = round_ste(v)
    if mode == "noise":
        return hard, v + torch.empty_like(v).uniform_(-0.5, 0.5)
    return hard, hard


def _factorized_bits(prior: FactorizedPrior, v: torch.Tensor) -> torch.Tensor:
    return -torch.log2(prior.likelihood(v)).sum()


def _msp_sga(model: AdapixModel, feats: torch.Tensor, y: torch.Tensor,
             tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """MSP pass with SGA-relaxed rounding around the predicted means (same loop as coding)."""
    bits = torch.zeros((), device=y.device)
    scale_min = model.cfg.scale_min

    def handler(step: Step, y_part, mu, sigma):
        nonlocal bits
        r = sga_round(y_part.float() - mu, tau)
        lik = gaussian_likelihood(r, torch.zeros_like(mu), sigma, scale_min)
        bits = bits - torch.log2(lik).sum()
        return mu + r

    y_hat = model.msp.run(feats, y, handler)
    return y_hat, bits


def proxy_loss(model: AdapixModel, lat: Latents, t: float, x: torch.Tensor, hw: tuple[int, int],
               postfilter: bool, rate_mode: str = "ste", tau: float = 0.5,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Differentiable RD cost of latents: (loss, bpp, mse) with loss = bpp + lambda*255^2*mse.

    bits = bits_y + bits_z + bits_s (ideal code lengths), bpp over the H*W pixels of ``hw``, MSE
    of the float reconstruction cropped to ``hw`` against x cropped.
    """
    tt = torch.tensor([float(t)])
    z_hat, z_rate = _relax(lat.z, rate_mode, tau)
    s_hat, s_rate = _relax(lat.s, rate_mode, tau)
    bits = _factorized_bits(model.z_prior, z_rate) + _factorized_bits(
        model.s_prior, s_rate.unsqueeze(-1))
    feats = model.h_s(z_hat)
    if rate_mode == "sga":
        y_hat, bits_y = _msp_sga(model, feats, lat.y, tau)
    else:
        y_hat, bits_y = model.msp(feats, lat.y, rate_mode=rate_mode)
        bits_y = bits_y.sum()
    x_hat = model.synthesize(y_hat, s_hat, tt, postfilter)
    pixels = int(hw[0]) * int(hw[1])
    bpp = (bits + bits_y) / pixels
    mse = ((_crop(x_hat, hw).float() - _crop(x, hw).float()) ** 2).mean()
    return bpp + _lam(model, t) * 255.0 ** 2 * mse, bpp, mse


@contextmanager
def _frozen(model: AdapixModel) -> Iterator[None]:
    """Model weights without gradients (restored afterwards); autograd on."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with torch.enable_grad():
            yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)


def _detach(lat: Latents) -> Latents:
    return Latents(y=lat.y.detach().clone(), z=lat.z.detach().clone(), s=lat.s.detach().clone())


# ---- the optimiser ---------------------------------------------------------------------------
class _Run:
    """State shared by the stages of one optimisation: clock, best state, bookkeeping."""

    def __init__(self, model, x, hw, t, postfilter, time_budget, progress):
        self.model, self.x, self.hw, self.t, self.postfilter = model, x, hw, float(t), postfilter
        self.budget = time_budget
        self.progress = progress
        self.t0 = time.perf_counter()
        self.eval_seconds = 0.0
        self.stats = OptimizeStats()
        self.best: _State | None = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def out_of_time(self, reserve: float = 0.0) -> bool:
        """True when the budget is spent, keeping ``reserve`` seconds (e.g. for a final eval)."""
        if self.budget is None:
            return False
        if self.elapsed() + reserve >= self.budget:
            self.stats.stopped_by_budget = True
            return True
        return False

    def evaluate(self, lat: Latents, stage: str, it: int) -> _State:
        """Codes ``lat`` for real; keeps it if it beats the best so far."""
        t1 = time.perf_counter()
        lat = _detach(lat)
        cost, res = rd_cost_true(self.model, lat, self.t, self.x, self.hw, self.postfilter)
        pixels = int(self.hw[0]) * int(self.hw[1])
        est = res.est_bits / pixels + _lam(self.model, self.t) * _sse255(res.x_hat, self.x, self.hw)
        st = _State(lat, cost, est, res)
        self.eval_seconds = time.perf_counter() - t1
        self.stats.evaluations += 1
        self.stats.history.append((stage, it, cost))
        if self.best is None or st.better_than(self.best):
            self.best = st
        if self.progress is not None:
            self.progress(stage, it, self.best.cost)
        return st


def _finetune_encoder(run: _Run, preset: Preset) -> None:
    """Fine-tunes a copy of g_a on the image (decoder untouched), then evaluates its latents."""
    model, tt = run.model, torch.tensor([run.t])
    g_a = copy.deepcopy(model.g_a)
    for p in g_a.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(g_a.parameters(), lr=preset.finetune_lr)
    gain = model._interp(model.log_gain, tt)

    def latents() -> Latents:
        y = g_a(run.x) * gain.to(run.x.dtype)
        return Latents(y=y, z=model.h_a(y), s=model.syntax(y))

    done = 0
    for i in range(preset.finetune_iters):
        if run.out_of_time(reserve=run.eval_seconds):
            break
        loss, _, _ = proxy_loss(model, latents(), run.t, run.x, run.hw, run.postfilter, "noise")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = i + 1
    run.stats.finetune_iters = done
    if done:
        with torch.no_grad():
            run.evaluate(latents(), "finetune", done)


def _run_phase(run: _Run, phase: Phase, start: Latents) -> None:
    """Adam on the continuous latents named in ``phase.optimize`` (the others stay fixed)."""
    leaves = {n: getattr(start, n).detach().clone().float().requires_grad_(n in phase.optimize)
              for n in LATENT_NAMES}
    opt = torch.optim.Adam([leaves[n] for n in phase.optimize], lr=phase.lr)
    cur = Latents(**leaves)
    done = last_eval = 0
    for i in range(phase.iters):
        if run.out_of_time(reserve=run.eval_seconds):
            break
        for g in opt.param_groups:
            g["lr"] = phase.lr_at(i)
        loss, _, _ = proxy_loss(run.model, cur, run.t, run.x, run.hw, run.postfilter,
                                phase.rate_mode, phase.tau_at(i))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run.stats.iterations += 1
        done = i + 1
        if done % phase.eval_every == 0 and done < phase.iters:
            with torch.no_grad():
                run.evaluate(cur, phase.name, done)
            last_eval = done
    if done > last_eval:  # end of the phase, or stopped by the budget: look at the last state
        with torch.no_grad():
            run.evaluate(cur, phase.name, done)


# ---- greedy search over rounding decisions ---------------------------------------------------
def _step_view(t: torch.Tensor, step: Step, scales: int, mg: int) -> torch.Tensor:
    """The view of a full (1, M, h, w) tensor holding the elements coded at ``step``."""
    ch = slice(step.group * mg, (step.group + 1) * mg)
    if step.phase_index == 0:
        s = 2 ** (scales - 1)
        return t[:, ch, ::s, ::s]
    s = 2 ** step.scale
    a, b = step.phase
    return t[:, ch, a * s:: 2 * s, b * s:: 2 * s]


class _RecordingCoder:
    """Stands in for the entropy coder in ``msp.code``: records (symbols, scale indices) of each
    step in coding order and hands the symbols back, as an encoder does."""

    mode = "encode"

    def __init__(self) -> None:
        self.steps: list[tuple[np.ndarray, np.ndarray]] = []

    def code(self, symbols: np.ndarray, index: np.ndarray) -> np.ndarray:
        self.steps.append((np.array(symbols, copy=True), np.array(index, copy=True)))
        return symbols


@torch.no_grad()
def _coding_maps(model: AdapixModel, lat: Latents) -> tuple[torch.Tensor, ...]:
    """Replays the coding pass of ``compress_latents`` with a recording coder.

    Returns full-size maps (1, M, h, w), float64, of the snapped mean mu_s and of the table
    standard deviation of every element, y_hat (= symbol + mu_s), and s_hat (1, D)."""
    _, s_hat = model.s_prior.compress(lat.s.unsqueeze(-1))
    _, z_hat = model.z_prior.compress(lat.z)
    feats = model.hyper_features(z_hat)
    rec = _RecordingCoder()
    y_hat, _ = model.msp.code(feats, lat.y, rec, model.snap, model.fixed_nets())
    y_hat = y_hat.to(torch.float64)
    steps = model.msp.steps()
    if len(rec.steps) != len(steps):
        raise RuntimeError("MSP coding order does not match MSPModel.steps()")
    mu_map = torch.zeros_like(y_hat)
    std_map = torch.ones_like(y_hat)
    stds = torch.as_tensor(model.snap.stds, dtype=torch.float64)
    S, mg = model.cfg.scales, model.cfg.M // model.cfg.groups
    for step, (sym, idx) in zip(steps, rec.steps):
        yv = _step_view(y_hat, step, S, mg)
        q = torch.as_tensor(sym.astype(np.float64)).view(yv.shape)
        _step_view(mu_map, step, S, mg).copy_(yv - q)
        _step_view(std_map, step, S, mg).copy_(stds[torch.as_tensor(idx).long()].view(yv.shape))
    return mu_map, std_map, y_hat, s_hat.squeeze(-1)


def _distortion_grad(run: _Run, y_hat: torch.Tensor, s_hat: torch.Tensor) -> torch.Tensor:
    """d(lambda * 255^2 * MSE) / d y_hat, (1, M, h, w)."""
    leaf = y_hat.detach().float().clone().requires_grad_(True)
    with torch.enable_grad():
        x_hat = run.model.synthesize(leaf, s_hat, torch.tensor([run.t]), run.postfilter)
        mse = ((_crop(x_hat, run.hw).clamp(0, 1) - _crop(run.x, run.hw)) ** 2).mean()
        (grad,) = torch.autograd.grad(_lam(run.model, run.t) * 255.0 ** 2 * mse, leaf)
    return grad


def _element_bits(q: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    lik = gaussian_likelihood(q, torch.zeros_like(std), std, 0.0)
    return -torch.log2(lik)


def _greedy(run: _Run, gs: GreedySearch) -> None:
    """Greedy flips of rounding decisions of y, step by step in MSP order (see GreedySearch)."""
    model = run.model
    S, mg = model.cfg.scales, model.cfg.M // model.cfg.groups
    m = model.cfg.symbol_max
    pixels = int(run.hw[0]) * int(run.hw[1])
    evals = 0
    maps_of: _State | None = None  # the state the coding maps and the gradient belong to
    for step in model.msp.steps():
        if evals >= gs.max_evals or run.out_of_time(reserve=run.eval_seconds):
            break
        best = run.best
        if best is not maps_of:
            mu_map, std_map, y_hat, s_hat = _coding_maps(model, best.lat)
            grad = _distortion_grad(run, y_hat, s_hat)
            maps_of = best
        y = best.lat.y.double()
        r = _step_view(y, step, S, mg) - _step_view(mu_map, step, S, mg)
        q = torch.round(r).clamp(-m, m - 1)
        frac = r - q
        direction = torch.where(frac >= 0, 1.0, -1.0)
        dist = 0.5 - frac.abs()
        q_new = (q + direction).clamp(-m, m - 1)
        std = _step_view(std_map, step, S, mg)
        d_bits = _element_bits(q_new, std) - _element_bits(q, std)
        gain = _step_view(grad, step, S, mg) * (q_new - q) + d_bits / pixels
        flat_dist = dist.flatten()
        n_cand = max(1, int(gs.fraction * flat_dist.numel()))
        order = torch.argsort(flat_dist)[:n_cand]
        keep = (flat_dist[order] <= gs.threshold) & (gain.flatten()[order] < 0) & (
            q_new.flatten()[order] != q.flatten()[order])
        cand = order[keep]
        if cand.numel() == 0:
            continue
        cand = cand[torch.argsort(gain.flatten()[cand])]
        target = (_step_view(mu_map, step, S, mg) + q_new).flatten()
        for chunk in torch.tensor_split(cand, min(gs.chunks, cand.numel())):
            if evals >= gs.max_evals or run.out_of_time(reserve=run.eval_seconds):
                break
            y_try = run.best.lat.y.float().clone()
            view = _step_view(y_try, step, S, mg)
            flat = view.flatten().clone()
            flat[chunk] = target[chunk].to(flat.dtype)
            view.copy_(flat.view_as(view))
            before = run.best
            lat = Latents(y=y_try.to(before.lat.y.dtype), z=before.lat.z, s=before.lat.s)
            run.evaluate(lat, "greedy", evals)
            evals += 1
            run.stats.greedy_tried += 1
            if run.best is not before:
                run.stats.greedy_kept += 1
                run.stats.greedy_flips += int(chunk.numel())


# ---- entry points ----------------------------------------------------------------------------
def optimize_latents_ex(model: AdapixModel, x: torch.Tensor, hw: tuple[int, int], t: float,
                        preset: Preset, time_budget: float | None = None,
                        progress: Callable[[str, int, float], None] | None = None,
                        postfilter: bool | None = None) -> OptimizeOutcome:
    """Like :func:`optimize_latents`, also returning the best latents and statistics."""
    with torch.inference_mode(False):  # gradients are needed even if the caller disabled them
        return _optimize(model, x, hw, t, preset, time_budget, progress, postfilter)


def _optimize(model, x, hw, t, preset, time_budget, progress, postfilter) -> OptimizeOutcome:
    postfilter = preset.postfilter if postfilter is None else bool(postfilter)
    x = x.detach().float().clone()  # a normal tensor, even if x was made in inference mode
    run = _Run(model, x, hw, t, postfilter, time_budget, progress)
    # The random relaxations (noise, SGA) draw from a fixed seed, so that an encode does not
    # depend on (nor disturb) the caller's random state: same input and settings, same bytes on
    # the same machine and thread count (float gradients may differ elsewhere; a time budget
    # that cuts the search short also makes the result depend on the machine's speed).
    with torch.random.fork_rng(devices=[]), _frozen(model):
        torch.manual_seed(RANDOM_SEED)
        with torch.no_grad():
            lat0 = model.analyse(x, torch.tensor([float(t)]))
        run.evaluate(lat0, "start", 0)
        run.stats.initial_cost = run.best.cost
        if not run.out_of_time():
            if preset.encoder_finetune and preset.finetune_iters > 0:
                _finetune_encoder(run, preset)
            for phase in preset.phases:
                if run.out_of_time(reserve=run.eval_seconds):
                    break
                _run_phase(run, phase, run.best.lat)
            if preset.greedy.enabled and not run.out_of_time(reserve=run.eval_seconds):
                _greedy(run, preset.greedy)
    run.stats.final_cost = run.best.cost
    run.stats.seconds = run.elapsed()
    return OptimizeOutcome(result=run.best.result, latents=run.best.lat, stats=run.stats)


def optimize_latents(model: AdapixModel, x: torch.Tensor, hw: tuple[int, int], t: float,
                     preset: Preset, time_budget: float | None = None,
                     progress: Callable[[str, int, float], None] | None = None,
                     postfilter: bool | None = None) -> CodingResult:
    """Encoder-side RD optimisation of one image; returns the best CodingResult found.

    x (1, 3, Hp, Wp) padded image in [0, 1]; hw = (H, W) original size (the cost is measured on
    that region); t quality position; ``postfilter`` overrides ``preset.postfilter`` (the codec
    passes the effective flag, which also goes into the file header).

    Starts from ``model.analyse(x, t)`` (or a fine-tuned analysis, ``preset.encoder_finetune``),
    runs the gradient ``preset.phases`` and then, if enabled, the greedy rounding search. The true
    cost (:func:`rd_cost_true`) decides which state is kept, so the result is never worse than
    :meth:`AdapixModel.compress`. ``time_budget`` (seconds, None = unlimited) stops the search
    gracefully (keeping one true-cost evaluation in reserve); 0 returns the unoptimised result.
    ``progress(stage, iteration, best_cost)`` is called after every true-cost evaluation.
    """
    return optimize_latents_ex(model, x, hw, t, preset, time_budget, progress, postfilter).result


# ---- target rate or quality ------------------------------------------------------------------
@dataclass
class TargetResult:
    quality: float
    bpp: float
    psnr: float
    met: bool               # the target is satisfied (bpp <= target, or psnr >= target)
    evaluations: int
    payload: Any = None     # third element returned by the encoder callable, if any


def encode_to_target(encode_at: Callable[[float], tuple], *, target_bpp: float | None = None,
                     target_psnr: float | None = None, lo: float = 0.0, hi: float = 100.0,
                     quality_tol: float = 0.25, bpp_rtol: float = 0.01,
                     psnr_tol: float = 0.05, max_evals: int = 12) -> TargetResult:
    """Bisection over the quality knob (0..100) to reach a target rate or PSNR.

    ``encode_at(quality)`` encodes at that quality and returns ``(bpp, psnr)`` or
    ``(bpp, psnr, payload)`` (e.g. the encoded bytes, handed back in ``TargetResult.payload``).
    Exactly one of ``target_bpp`` / ``target_psnr`` must be given.

    * ``target_bpp``: the highest quality whose bpp <= target (the file never exceeds the target);
    * ``target_psnr``: the lowest quality whose PSNR >= target (the image never falls short).

    Tolerance: the search stops once a feasible encode is within ``bpp_rtol`` (relative, 1%) of
    the bpp target or within ``psnr_tol`` dB (0.05) of the PSNR target, or when the quality
    bracket is narrower than ``quality_tol`` (0.25 quality units; headers store quality to 0.01),
    or after ``max_evals`` encodes. Rate and PSNR are assumed non-decreasing in quality (true up
    to small noise); the best feasible encode seen is returned. If even the end of the range is
    infeasible, that end is returned with ``met=False``.
    """
    if (target_bpp is None) == (target_psnr is None):
        raise ValueError("give exactly one of target_bpp and target_psnr")
    by_bpp = target_bpp is not None
    evals = 0

    def call(q: float) -> TargetResult:
        nonlocal evals
        evals += 1
        out = encode_at(q)
        bpp, psnr = float(out[0]), float(out[1])
        ok = bpp <= target_bpp if by_bpp else psnr >= target_psnr
        return TargetResult(q, bpp, psnr, ok, 0, out[2] if len(out) > 2 else None)

    def close(r: TargetResult) -> bool:
        if by_bpp:
            return r.met and r.bpp >= target_bpp * (1 - bpp_rtol)
        return r.met and r.psnr <= target_psnr + psnr_tol

    def better(a: TargetResult, b: TargetResult | None) -> bool:
        """a is a better feasible answer than b: more bits for the rate target, fewer for PSNR."""
        if b is None:
            return True
        return a.quality > b.quality if by_bpp else a.quality < b.quality

    # the feasible end: low quality for a rate target, high quality for a PSNR target
    first = call(lo if by_bpp else hi)
    if not first.met:
        first.evaluations = evals
        return first
    best = first
    if close(best):
        best.evaluations = evals
        return best
    other = call(hi if by_bpp else lo)
    if other.met:
        other.evaluations = evals
        return other  # the whole range is feasible: the best end
    a, b = lo, hi  # invariant: feasible side and infeasible side of the bracket
    feas, infeas = (a, b) if by_bpp else (b, a)
    while evals < max_evals and abs(infeas - feas) > quality_tol:
        mid = 0.5 * (feas + infeas)
        r = call(mid)
        if r.met:
            feas = mid
            if better(r, best):
                best = r
            if close(r):
                break
        else:
            infeas = mid
    best.evaluations = evals
    return best


__all__ = ["Phase", "GreedySearch", "Preset", "rd_cost_true", "rd_cost_of", "measure",
           "stream_bits", "proxy_loss", "sga_round", "optimize_latents", "optimize_latents_ex", "OptimizeOutcome",
           "OptimizeStats", "encode_to_target", "TargetResult"]
