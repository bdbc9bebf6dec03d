"""Greedy search over the rounding decisions of y, in MSP coding order (:class:`GreedySearch`)."""

from __future__ import annotations

import numpy as np
import torch

from ..entropy.gaussian import gaussian_likelihood
from ..entropy.msp import Step
from ..model import AdapixModel, Latents
from .cost import _crop, _lam
from .presets import GreedySearch
from .run import _Run, _State


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
