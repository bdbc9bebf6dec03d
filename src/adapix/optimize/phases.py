"""The gradient stages: encoder fine-tuning, then the latent phases (Adam on the latents)."""

from __future__ import annotations

import copy

import torch

from ..model import Latents
from .presets import LATENT_NAMES, Phase, Preset
from .proxy import proxy_loss
from .run import _Run


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
