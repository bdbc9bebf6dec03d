"""Greedy search over the rounding decisions of y, in blocks of MSP steps (:class:`GreedySearch`)."""

from __future__ import annotations

import numpy as np
import torch

from ..entropy.gaussian import gaussian_likelihood
from ..entropy.msp import Step
from ..model import AdapixModel, Latents
from .cost import _crop
from .presets import RANDOM_SEED, GreedySearch
from .run import _Run


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


def _mse(run: _Run, x_hat: torch.Tensor) -> torch.Tensor:
    """MSE (on [0, 1]) of x_hat clamped to [0, 1] against the image, on the original region."""
    return ((_crop(x_hat, run.hw).clamp(0, 1) - _crop(run.x, run.hw)) ** 2).mean()


def _distortion_grad(run: _Run, y_hat: torch.Tensor, s_hat: torch.Tensor,
                     precision: str = "fp32") -> torch.Tensor:
    """d(lambda * 255^2 * MSE) / d y_hat, (1, M, h, w) (synthesis of the given precision)."""
    leaf = y_hat.detach().float().clone().requires_grad_(True)
    synth = run.synthesis(precision)
    with torch.enable_grad():
        x_hat = synth(leaf, s_hat.float())
        mse = _mse(run, x_hat)
        (grad,) = torch.autograd.grad(run.lam * 255.0 ** 2 * mse, leaf)
    return grad


def _distortion_curvature(run: _Run, y_hat: torch.Tensor, s_hat: torch.Tensor,
                          precision: str = "fp32", samples: int = 2) -> torch.Tensor:
    """Per-channel diagonal of the Gauss-Newton Hessian of lambda * 255^2 * MSE with respect to
    y_hat, (1, M, 1, 1): 2 lambda 255^2 / P * diag(J^T J), J = d x_hat / d y_hat over the P
    values of the cropped image. diag(J^T J) = E[(J^T v)^2] for Rademacher v (Hutchinson), from
    ``samples`` backward passes, averaged over the positions of each channel."""
    leaf = y_hat.detach().float().clone().requires_grad_(True)
    gen = torch.Generator().manual_seed(RANDOM_SEED)
    with torch.enable_grad():
        x_hat = _crop(run.synthesis(precision)(leaf, s_hat.float()), run.hw)
        acc = torch.zeros_like(leaf)
        for k in range(samples):
            v = torch.randint(0, 2, x_hat.shape, generator=gen).to(x_hat.dtype) * 2 - 1
            (g,) = torch.autograd.grad(x_hat, leaf, v, retain_graph=k < samples - 1)
            acc += g.float() ** 2
    diag = (acc / samples).mean(dim=(2, 3), keepdim=True)
    return 2.0 * run.lam * 255.0 ** 2 / x_hat.numel() * diag.double()


@torch.no_grad()
def _screen_cost(run: _Run, feats: torch.Tensor, y: torch.Tensor, s_hat: torch.Tensor,
                 precision: str) -> float:
    """A cheap stand-in for the true cost, for the decisions inside the greedy search.

    Rate: the ideal code length of y under the float32 MSP model (the proxy's STE rate; about 5x
    faster than replaying the fixed-point coding model, and the same up to the snapping of means
    and scales, for a y on the coded lattice, :func:`_lattice`). Distortion: lambda * 255^2 *
    MSE of the ``precision`` proxy synthesis, clamped to [0, 1]. z and s do not change during
    the search, so their bits are left out."""
    model = run.model
    y_hat, bits_t = model.msp(feats.float(), y.float(), rate_mode="ste")
    x_hat = run.synthesis(precision)(y_hat.float(), s_hat.float())
    mse = float(_mse(run, x_hat))
    pixels = int(run.hw[0]) * int(run.hw[1])
    return float(bits_t.sum()) / pixels + run.lam * 255.0 ** 2 * mse


def _lattice(y: torch.Tensor, mu_map: torch.Tensor, m: int) -> torch.Tensor:
    """y moved to what it codes as, mu_s + q with q = round(y - mu_s) (float32, (1, M, h, w)),
    mu_s the coded (snapped) means of ``mu_map``. The streams do not change, but the float
    model's rounding, about the float means, now agrees with the coder's: for y itself about 3%
    of the elements, those nearest a rounding boundary (the search's candidates), round the
    other way in the float model, so its cost and gradient would be those of another point."""
    q = torch.round(y.double() - mu_map).clamp(-m, m - 1)
    return (mu_map + q).float()


def _grad_and_screen(run: _Run, feats: torch.Tensor, y: torch.Tensor, s_hat: torch.Tensor,
                     precision: str) -> tuple[torch.Tensor, float]:
    """The distortion gradient (as :func:`_distortion_grad`) and the screening cost (as
    :func:`_screen_cost`) of y from one synthesis. The gradient is taken at the float model's
    y_hat; for y on the coded lattice (:func:`_lattice`) that has the coded integers, and differs
    from the coded y_hat only by the snapping of the means."""
    model = run.model
    with torch.no_grad():
        y_hat, bits_t = model.msp(feats.float(), y.float(), rate_mode="ste")
    leaf = y_hat.detach().float().clone().requires_grad_(True)
    with torch.enable_grad():
        x_hat = run.synthesis(precision)(leaf, s_hat.float())
        mse = _mse(run, x_hat)
        dist = run.lam * 255.0 ** 2 * mse
        (grad,) = torch.autograd.grad(dist, leaf)
    pixels = int(run.hw[0]) * int(run.hw[1])
    return grad, float(bits_t.sum()) / pixels + float(dist.detach())


def _element_bits(q: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    lik = gaussian_likelihood(q, torch.zeros_like(std), std, 0.0)
    return -torch.log2(lik)


def _candidates(run: _Run, gs: GreedySearch, step, y: torch.Tensor, mu_map, std_map,
                grad, curv: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Elements of ``step`` worth flipping, best predicted gain first, the flipped values (flat
    over the step's view) and the candidates' predicted gains (negative); None when there is
    none.

    Predicted gain of moving an element by d = +-1: exact change of its own code length under
    its Gaussian (contexts ignored) + g d (distortion gradient) + curv d^2 / 2 (the per-channel
    curvature of the distortion, when given: a flip always costs some distortion)."""
    model = run.model
    S, mg = model.cfg.scales, model.cfg.M // model.cfg.groups
    m = model.cfg.symbol_max
    pixels = int(run.hw[0]) * int(run.hw[1])
    r = _step_view(y.double(), step, S, mg) - _step_view(mu_map, step, S, mg)
    q = torch.round(r).clamp(-m, m - 1)
    frac = r - q
    std = _step_view(std_map, step, S, mg)
    g = _step_view(grad, step, S, mg)
    c = None if curv is None else curv[:, step.group * mg:(step.group + 1) * mg]

    def predicted(q_new):
        d = q_new - q
        gain = g * d + (_element_bits(q_new, std) - _element_bits(q, std)) / pixels
        return gain if c is None else gain + 0.5 * c * d ** 2

    # the other of the two integers around y - mu, nearest the boundary first
    q_new = (q + torch.where(frac >= 0, 1.0, -1.0)).clamp(-m, m - 1)
    gain = predicted(q_new)
    flat_dist = (0.5 - frac.abs()).flatten()
    n_cand = max(1, int(gs.fraction * flat_dist.numel()))
    order = torch.argsort(flat_dist)[:n_cand]
    keep = (flat_dist[order] <= gs.threshold) & (gain.flatten()[order] < 0) & (
        q_new.flatten()[order] != q.flatten()[order])
    cand = order[keep]
    if cand.numel() == 0:
        return None
    cand = cand[torch.argsort(gain.flatten()[cand])]
    target = (_step_view(mu_map, step, S, mg) + q_new).flatten()
    return cand, target, gain.flatten()[cand]


class _Flips:
    """Candidates of one block of MSP steps (``GreedySearch.merge``), best predicted gain first:
    for each candidate, the index of its step in the block and its flat index in that step's
    view; ``targets[j]`` holds the flipped values of step j's view."""

    def __init__(self, found: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]):
        self.targets = {j: target for j, _, target, _ in found}
        sid = torch.cat([torch.full_like(cand, j) for j, cand, _, _ in found])
        idx = torch.cat([cand for _, cand, _, _ in found])
        order = torch.argsort(torch.cat([gain for _, _, _, gain in found]), stable=True)
        self.sid, self.idx = sid[order], idx[order]

    def __len__(self) -> int:
        return int(self.idx.numel())

    def chunks(self, n: int) -> list[torch.Tensor]:
        """Positions (into sid/idx) of n chunks of about equal size, best first."""
        return list(torch.tensor_split(torch.arange(len(self)), min(n, len(self))))

    def apply(self, y: torch.Tensor, block: list[Step], scales: int, mg: int,
              pos: torch.Tensor | None = None) -> torch.Tensor:
        """A copy of y with the candidates at positions ``pos`` (default: all) flipped."""
        sid = self.sid if pos is None else self.sid[pos]
        idx = self.idx if pos is None else self.idx[pos]
        for j in sid.unique().tolist():
            y = _flipped(y, block[j], scales, mg, idx[sid == j], self.targets[j])
        return y


def _flipped(y: torch.Tensor, step, scales: int, mg: int, idx: torch.Tensor,
             target: torch.Tensor) -> torch.Tensor:
    """A copy of y with the elements ``idx`` (flat over the step's view) set to ``target``."""
    y_try = y.float().clone()
    view = _step_view(y_try, step, scales, mg)
    flat = view.flatten().clone()
    flat[idx] = target[idx].to(flat.dtype)
    view.copy_(flat.view_as(view))
    return y_try.to(y.dtype)


def _blocks(steps: list[Step], gs: GreedySearch) -> list[list[Step]]:
    """The search's blocks for all its passes: the MSP steps in ``gs.order``, ``gs.merge``
    consecutive steps to a block (a pass's last block may be shorter)."""
    one = steps[::-1] if gs.order == "reverse" else steps
    blocks = [one[i:i + gs.merge] for i in range(0, len(one), gs.merge)]
    return blocks * max(1, gs.passes)


def _greedy(run: _Run, gs: GreedySearch) -> None:
    """Greedy flips of rounding decisions of y, block by block (``gs.merge`` MSP steps each, in
    ``gs.order``; see :class:`GreedySearch`), with cheap decisions: chunks are kept when the
    screening cost (:func:`_screen_cost`) drops; the true cost is measured after every
    ``gs.verify_every`` blocks that changed something, and those blocks' flips are dropped
    unless it dropped too. The coding maps (snapped means, scales) and the distortion gradient
    that choose the candidates are recomputed after each verification (``gs.fresh_maps``: after
    every block that changed); in between, the means of later steps move by far less than a
    quantisation step."""
    model = run.model
    S, mg = model.cfg.scales, model.cfg.M // model.cfg.groups
    m = model.cfg.symbol_max
    evals = 0
    base = run.best  # the state the search builds on: z, s and the verified y
    with torch.no_grad():
        _, z_hat = model.z_prior.compress(base.lat.z)
        feats = model.hyper_features(z_hat)  # z does not change during the search
    y_state = y_verified = base.lat.y
    maps_of = None  # the y the coding maps, the gradient and the screening cost belong to
    curv = None
    pending = pending_kept = pending_flips = 0
    blocks = _blocks(model.msp.steps(), gs)
    maps_seconds = 0.0  # what the last recomputation of the maps took (a budget reserve)
    for k, block in enumerate(blocks):
        new_maps = maps_of is None or (maps_of is not y_state and (gs.fresh_maps or not pending))
        reserve = (1 + bool(pending)) * run.eval_seconds + (maps_seconds if new_maps else 0.0)
        if evals >= gs.max_evals or run.out_of_time(reserve=reserve):
            break
        if new_maps:
            t_maps = run.clock()
            lat = Latents(y=y_state, z=base.lat.z, s=base.lat.s)
            mu_map, std_map, y_hat, s_hat = _coding_maps(model, lat)
            if gs.screen:  # one synthesis gives the gradient and the screening cost
                grad, cur_screen = _grad_and_screen(run, feats, _lattice(y_state, mu_map, m),
                                                    s_hat, gs.precision)
            else:
                grad = _distortion_grad(run, y_hat, s_hat, gs.precision)
            if gs.curvature and curv is None:
                curv = _distortion_curvature(run, y_hat, s_hat, gs.precision)
            maps_of = y_state
            maps_seconds = run.clock() - t_maps
        found = []
        for j, step in enumerate(block):
            c = _candidates(run, gs, step, y_state, mu_map, std_map, grad, curv)
            if c is not None:
                found.append((j, *c))
        if found:
            flips = _Flips(found)
            y_cur, kept, n_flips = y_state, 0, 0
            if not gs.screen:  # all the block's candidates at once; the verification decides
                y_cur, kept, n_flips = flips.apply(y_cur, block, S, mg), 1, len(flips)
                run.stats.greedy_tried += 1
            for pos in (flips.chunks(gs.chunks) if gs.screen else ()):
                if run.out_of_time(reserve=2 * run.eval_seconds):
                    break
                y_try = flips.apply(y_cur, block, S, mg, pos)
                c = _screen_cost(run, feats, _lattice(y_try, mu_map, m), s_hat, gs.precision)
                run.stats.greedy_tried += 1
                if c < cur_screen:
                    y_cur, cur_screen = y_try, c
                    kept, n_flips = kept + 1, n_flips + int(pos.numel())
            if kept:
                y_state, pending = y_cur, pending + 1
                pending_kept, pending_flips = pending_kept + kept, pending_flips + n_flips
        if pending and (pending >= gs.verify_every or k == len(blocks) - 1):
            before = run.best
            run.evaluate(Latents(y=y_state, z=base.lat.z, s=base.lat.s), "greedy", evals)
            evals += 1
            if run.best is not before:  # confirmed by the true cost
                run.stats.greedy_kept += pending_kept
                run.stats.greedy_flips += pending_flips
                y_verified = y_state
            else:  # drop the unconfirmed flips
                y_state = y_verified
            pending = pending_kept = pending_flips = 0
    if pending and evals < gs.max_evals:  # stopped with unverified flips: verify them
        run.evaluate(Latents(y=y_state, z=base.lat.z, s=base.lat.s), "greedy", evals)
