"""The gradient stages: encoder fine-tuning, then the latent phases (Adam on the latents)."""

from __future__ import annotations

import copy

import torch

from ..model import Latents
from .presets import FINETUNE_MODULES, LATENT_NAMES, Phase, Preset, cosine_lr
from .proxy import _factorized_bits, proxy_loss
from .run import _Run


def _finetune_encoder(run: _Run, preset: Preset) -> None:
    """Fine-tunes copies of ``preset.finetune_modules`` (g_a, and optionally h_a and the model
    stream's encoder) on the image (decoder untouched), then evaluates their latents.

    Adam on the proxy loss (noise for the rate), lr ``preset.finetune_lr`` cosine-annealed to
    ``finetune_lr * finetune_lr_final`` over the steps; the true cost is measured every
    ``finetune_eval_every`` steps (0: only at the end) and the run keeps the best state. Under a
    time budget the steps stop when the next one and the closing true-cost evaluation would end
    after ``preset.finetune_share`` of the budget (the first step always runs)."""
    model, tt = run.model, torch.tensor([run.t])
    # copies of the encoder-side modules that move (the others are the model's, frozen)
    mods = {n: getattr(model, n) for n in FINETUNE_MODULES}
    for n in preset.finetune_modules:
        mods[n] = copy.deepcopy(mods[n])
        for p in mods[n].parameters():
            p.requires_grad_(True)
    opt = torch.optim.Adam([p for n in preset.finetune_modules for p in mods[n].parameters()],
                           lr=preset.finetune_lr)
    gain = model._interp(model.log_gain, tt)
    with torch.no_grad():
        rate_mods = model.analysis_mods(tt)  # the model's, frozen (None without modulation)
    end = None if run.budget is None else run.budget * preset.finetune_share

    def latents() -> Latents:
        y = mods["g_a"](run.x, rate_mods) * gain.to(run.x.dtype)
        return Latents(y=y, z=mods["h_a"](y), s=mods["syntax"](y))

    n, every = preset.finetune_iters, preset.finetune_eval_every
    done = evaluated = 0
    step_seconds = 0.0
    for i in range(n):
        if run.out_of_time(reserve=run.eval_seconds):
            break
        if end is not None and done and run.elapsed() + step_seconds + run.eval_seconds > end:
            run.stats.stopped_by_budget = True
            break
        t1 = run.clock()
        if preset.finetune_lr_final != 1.0:  # cosine annealing over the steps
            for g in opt.param_groups:
                g["lr"] = cosine_lr(preset.finetune_lr, preset.finetune_lr_final,
                                    i / (n - 1) if n > 1 else 1.0)
        loss, _, _ = proxy_loss(model, latents(), run.t, run.x, run.hw, run.postfilter, "noise",
                                synthesis=run.synthesis("auto"), lam=run.lam)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step_seconds = run.clock() - t1
        done = i + 1
        if every and done % every == 0 and done < n:  # an intermediate true-cost evaluation
            with torch.no_grad():
                run.evaluate(latents(), "finetune", done)
            evaluated = done
    run.stats.finetune_iters = done
    if done and evaluated != done:
        with torch.no_grad():
            run.evaluate(latents(), "finetune", done)


def _run_phase(run: _Run, phase: Phase, start: Latents, deadline: float | None = None) -> None:
    """Adam on the continuous latents named in ``phase.optimize`` (the others stay fixed).

    ``deadline`` (seconds since the start of the run, None = none): the phase, its last true-cost
    evaluation included, should be over by then; its schedules then advance with the time spent
    as well as with the iterations (see :class:`Phase`), so a phase that runs out of time still
    ends at the end of its learning-rate schedule.
    """
    leaves = {n: getattr(start, n).detach().clone().float().requires_grad_(n in phase.optimize)
              for n in LATENT_NAMES}
    opt = torch.optim.Adam([leaves[n] for n in phase.optimize], lr=phase.lr)
    cur = Latents(**leaves)
    synthesis = run.synthesis(phase.precision)
    hyper = None
    if "z" not in phase.optimize:  # z fixed: its rate and h_s(z_hat) are constants
        with torch.no_grad():
            z_hat = torch.round(leaves["z"])
            hyper = (_factorized_bits(run.model.z_prior, z_hat), run.model.h_s(z_hat))
    t_start = run.elapsed()
    done = last_eval = 0
    for i in range(phase.iters):
        p = phase.progress(i)
        if deadline is None:
            if run.out_of_time(reserve=run.eval_seconds + run.iter_seconds):
                break
        else:  # the deadline is never later than the end of the budget
            avail = deadline - t_start - run.eval_seconds  # time for the iterations
            spent = run.elapsed() - t_start + run.iter_seconds  # at the end of this iteration
            if spent > avail:  # (the first step of the first phase always runs)
                run.stats.stopped_by_budget = True
                break
            if spent + run.iter_seconds > avail:  # no time for another one: the last step
                p = 1.0
            else:
                p = max(p, min(1.0, spent / avail))
        t1 = run.clock()
        for g in opt.param_groups:
            g["lr"] = phase.lr_at_progress(p)
        loss, _, _ = proxy_loss(run.model, cur, run.t, run.x, run.hw, run.postfilter,
                                phase.rate_mode, phase.tau_at_progress(p), synthesis=synthesis,
                                hyper=hyper, lam=run.lam)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run.iter_seconds = run.clock() - t1
        run.iter_total += run.iter_seconds
        run.stats.iterations += 1
        done = i + 1
        if done % phase.eval_every == 0 and done < phase.iters:
            with torch.no_grad():
                run.evaluate(cur, phase.name, done)
            last_eval = done
        if p >= 1.0 and done < phase.iters:  # the schedule ran out of time before iterations
            run.stats.stopped_by_budget = True
            break
    if done > last_eval:  # end of the phase, or stopped by the budget: look at the last state
        with torch.no_grad():
            run.evaluate(cur, phase.name, done)
