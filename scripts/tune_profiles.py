"""Tunes and measures the encoder-side optimisation presets (issue 5) on training-photo crops.

Never on the evaluation set: the images are 768x512 crops (resized to cover 768x512, then
centre-cropped, i.e. the size of a Kodak image) of photos from ``../shared/data/train/sun_hays80``.
For every (image, quality, configuration) the script runs :func:`adapix.optimize.optimize_latents_ex`
with the shipped model and records the real rate (bits of the three coded streams per pixel), the
PSNR of the 8-bit reconstruction, the true RD cost and the encode seconds. The summary gives, per
configuration against ``fast``:

* BD-rate (PSNR, akima, :mod:`adapix.eval.bdrate`), mean of the per-image values;
* the mean reduction of the true RD cost at equal lambda (R + lambda * 255^2 * MSE), in percent;
* mean seconds per encode, gradient iterations and true-cost evaluations;
* then, per quality, the mean (and per-image) RD-cost change: where in the rate range a
  configuration pays.

Results are appended to a JSON-lines file and reused on the next run (delete it to start over).

Examples::

    python scripts/tune_profiles.py --configs fast,balanced,best
    python scripts/tune_profiles.py --configs fast,lof-only,lof+greedy,best --budget default
    python scripts/tune_profiles.py --list

Times depend on the machine, the thread count (``--threads``, default 1) and other load.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from adapix.codec import Codec
from adapix.config import ModelConfig
from adapix.eval.bdrate import bd_rate
from adapix.images import pad_to_multiple
from adapix.model import lambda_at, position_to_quality, quality_to_position
from adapix.optimize import (GreedySearch, Phase, Preset, measure, optimize_latents_ex,
                             rd_cost_of)
from adapix.optimize.presets import RATE_MODES
from adapix.profiles import BALANCED, BEST, MID_LAMBDA, PROFILES, TOP_LAMBDA

TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "train" / "sun_hays80"
# landscape photos of varied content (architecture, water, foliage, street, mountains, a shop)
IMAGES = ["abbey_sun_asztnlqhlrvirneh.jpg", "canal_urban_sun_bioizsmryxlratmt.jpg",
          "forest_broadleaf_sun_bqkcqwvhefnkcinz.jpg", "street_sun_bkgpqbvgorkjqzgp.jpg",
          "mountain_sun_bdgkjthkoxhovklv.jpg", "candy_store_sun_aoqcvifuszwpcvcj.jpg"]
QUALITIES = (10, 35, 60, 85)


def lof(iters: int, lr: float = 0.05, mode: str = "ste", opt=("y", "z", "s"),
        lr_final: float = 0.1, evals: int = 1, precision: str = "auto",
        tau=(0.5, 0.05), name: str = "lof", min_lambda: float = 0.0) -> Phase:
    """A gradient phase with ``evals`` true-cost evaluations (the last at the end)."""
    return Phase(name, iters=iters, lr=lr, rate_mode=mode, optimize=tuple(opt),
                 lr_final=lr_final, eval_every=max(1, math.ceil(iters / evals)), tau=tau,
                 precision=precision, min_lambda=min_lambda)


def six_anchor_lambda(quality: float) -> float:
    """lambda of ``quality`` on the six-anchor scale (0.0018 ... 0.16) of the models of sessions
    1-9, so the tags of the committed rows (e.g. ``-q75``) keep their meaning."""
    cfg = ModelConfig()  # the default lambdas are that scale
    return float(lambda_at(cfg.lambdas, torch.tensor([quality_to_position(cfg, quality)])))


GREEDY = GreedySearch(enabled=True, fraction=0.05, threshold=0.2, chunks=3, max_evals=48)
# best as it was in sessions 13-14 (30 fine-tuning steps of g_a alone, lr 1e-4, at most half the
# budget, evaluated at the end)
BEST_S14 = replace(BEST, finetune_iters=30, finetune_lr=1e-4, finetune_lr_final=1.0,
                   finetune_eval_every=0, finetune_share=0.5, finetune_modules=("g_a",))

# best as it was in session 15 (the noise phase of 100 steps from MID_LAMBDA up at every lambda)
BEST_S15 = replace(BEST, phases=(replace(BEST.phases[0], max_lambda=math.inf),))

# Named configurations; any other name is parsed by :func:`parse_config`.
CONFIGS: dict[str, Preset] = {
    "fast": Preset(),
    "balanced": BALANCED,
    "best": BEST,
    # the presets before issue-5 tuning (float32 proxy, 80 / 250 STE iterations)
    "old-balanced": Preset(phases=(Phase("lof", iters=80, lr=0.05, rate_mode="ste", lr_final=0.1,
                                         eval_every=20, precision="fp32"),)),
    "old-best": Preset(phases=(Phase("lof", iters=250, lr=0.05, rate_mode="ste", lr_final=0.05,
                                     eval_every=25, precision="fp32"),), greedy=GREEDY),
    "greedy-only": Preset(greedy=GREEDY),
    # balanced as it was in sessions 11-13 (the gradient phase from lambda 0.053 up, the search
    # alone below), and session 14's first step (the phase from 0.027 up, the quality decision
    # below, no fine-tuning); rows of session 14 renamed from `balanced` / `bal14-a`
    "balanced-s11": replace(BALANCED, phases=(replace(BALANCED.phases[0], min_lambda=0.053),),
                            encoder_finetune=False, quality_offsets=()),
    "balanced-s14a": replace(BALANCED, encoder_finetune=False),
    # balanced as it was in session 3 (40 noise steps on y and s, then the fresh-map search)
    "balanced-s3": Preset(phases=(Phase("lof", iters=40, lr=0.08, rate_mode="noise",
                                        optimize=("y", "s"), lr_final=0.1, eval_every=40),),
                          greedy=GreedySearch(enabled=True, fraction=0.3, threshold=0.5, chunks=8,
                                              verify_every=4, fresh_maps=True)),
    # best as it was in sessions 6-10 (the gradient phase from lambda 0.053 up only, 160 steps;
    # the search with 75% of the budget there and all of it below); rows of sessions 10 and 11
    "best-s10": Preset(phases=(Phase("lof", iters=160, lr=0.08, rate_mode="noise",
                                     optimize=("y", "z", "s"), lr_final=0.05, eval_every=80,
                                     min_lambda=0.053),),
                       greedy=GreedySearch(enabled=True, fraction=0.3, threshold=0.5, chunks=3,
                                           verify_every=8, fresh_maps=True, curvature=True,
                                           passes=4),
                       postfilter=True, postfilter_choice=True),
    # session 15, candidates for best below MID_LAMBDA (where the search alone ran out of work
    # after 44-67 s of 120 on the Kodak images), from best as it was in sessions 13-14: the noise
    # phase at every lambda (after the fine-tuning); an SGA phase below
    # MID_LAMBDA only; h_a and the model stream's encoder fine-tuned with g_a; with them, 60
    # fine-tuning steps in up to 60% of the budget, the lr cosine-annealed to a tenth, the true
    # cost measured every 20 steps (the best state kept): best since session 15
    "best-s14": BEST_S14,
    "best-ph0": replace(BEST_S14, phases=(replace(BEST.phases[0], min_lambda=0.0),)),
    "best-sga-low": replace(BEST_S14, phases=BEST.phases + (
        Phase("sga", iters=100, lr=0.1, rate_mode="sga", optimize=("y", "z", "s"),
              lr_final=0.1, eval_every=50, max_lambda=MID_LAMBDA),)),
    "best-fth": replace(BEST_S14, finetune_modules=("g_a", "h_a", "syntax")),
    "best-fth-ft60e": replace(BEST_S14, finetune_modules=("g_a", "h_a", "syntax"),
                              finetune_iters=60, finetune_lr_final=0.1, finetune_eval_every=20,
                              finetune_share=0.6),
    "best-fth-ft60e-lr2": replace(BEST_S14, finetune_modules=("g_a", "h_a", "syntax"),
                                  finetune_iters=60, finetune_lr=2e-4, finetune_lr_final=0.1,
                                  finetune_eval_every=20, finetune_share=0.6),
    # session 16, candidates for best at the top (from TOP_LAMBDA, the anchor of quality 85.7):
    # its noise phase runs 200 steps there (true cost every 50) instead of 100, at lr 0.15 (best
    # since session 16) or 0.2; and at quality 75 the quality decision (quality - 4 also tried)
    # up to TOP_LAMBDA. Rows of session 16's `best-s15` were measured as `best`.
    "best-s15": BEST_S15,
    "best-top200": BEST,
    "best-top200-lr0.2": replace(BEST, phases=(BEST.phases[0], replace(BEST.phases[1], lr=0.2))),
    "best-q67": replace(BEST_S15, quality_max_lambda=TOP_LAMBDA),
    # leads at quality 75: quality - 2 and - 4 tried there; 20 fine-tuning steps of the three
    # encoder-side transforms (lr annealed, true cost every 10, at most 25% of the budget) first
    "best-q67-2_4": replace(BEST_S15, quality_offsets=(-2.0, -4.0), quality_max_lambda=TOP_LAMBDA),
    "best-ft20q75": replace(BEST_S15, finetune_iters=20, finetune_eval_every=10,
                            finetune_share=0.25, finetune_max_lambda=TOP_LAMBDA),
    # the same with the noise phase after it at lr 0.05 (at 0.15 it first undid the fine-tuning)
    "best-ft20q75-lr0.05": replace(BEST_S15, finetune_iters=20, finetune_eval_every=10,
                                   finetune_share=0.25, finetune_max_lambda=TOP_LAMBDA,
                                   phases=(replace(BEST_S15.phases[0], lr=0.05),)),
    # session 17, below MID_LAMBDA (after the fine-tuning): the search's candidates of a step in
    # 5 or 8 chunks instead of 3, 3 passes instead of 4 (scripts/search_trace.py --blocks showed
    # the fourth pass repeating the third: nothing kept, same candidates, same chunks).
    # `best-c8p3` below MID_LAMBDA is `best` since session 17 (Preset.greedy_after_finetune);
    # `best-s16` is best as it was (rows of session 16's `best` at quality 39.3 / 53.6 copied
    # under that name)
    "best-s16": replace(BEST, greedy_after_finetune=None),
    "best-c5p3": replace(BEST, greedy_after_finetune=replace(BEST.greedy, chunks=5, passes=3)),
    "best-c8p3": replace(BEST, greedy_after_finetune=replace(BEST.greedy, chunks=8, passes=3)),
}


def parse_config(name: str) -> Preset:
    """``{ste|noise|sga}{iters}[-lr{lr}][-lrf{final}][-{y|ys|yz|yzs}][-fp32][-e{evals}][-l{min}]``
    (``-l{min}``: the phase runs only at lambda >= min; ``-q{min}``: from the lambda of quality
    ``min`` on the six-anchor scale 0.0018 ... 0.16 that sessions 1-9 measured with),
    phases joined by ``/`` (e.g. ``noise40/ste20``), optionally after ``ft{iters}[-lr{lr}]``
    (the analysis transform g_a fine-tuned on the image first, ``Preset.encoder_finetune``;
    write the lr without an exponent, e.g. ``-lr0.0001``), then optionally ``+greedy`` with options
    ``-f{fraction}``, ``-t{threshold}``, ``-c{chunks}``, ``-n{max_evals}``, ``-v{verify_every}``,
    ``-p{passes}``, ``-s{time_share}`` (of a time budget, after gradient phases), ``-m{merge}``
    (consecutive steps searched as one block),
    ``-noscreen`` (a step's candidates at once, verified only by the true cost),
    ``-fresh`` (coding maps recomputed after every changed step), ``-rev`` (steps finest first),
    ``-curv``
    (curvature term in the candidate screen) and ``-fp32``/``-fp32cl``/``-bf16`` (precision of
    the search's proxy synthesis; default auto); no phase before ``+greedy``: the search alone.
    A final ``+pf`` turns the decoder's post-filter on (for the search and the result), e.g.
    ``fast+pf``, ``balanced+pf``; before it, ``+qo{offset}[_{offset}...]`` adds a quality mode
    decision (``Preset.quality_offsets``, e.g. ``+qo-4`` or ``+qo-4_-8``); before that,
    ``+ft{iters}[-lr{lr}][-l{max lambda}][-s{share}]`` fine-tunes g_a first in any preset (e.g.
    ``balanced+ft10-lr0.0002-l0.053-s0.5+qo-4``), and ``+it{N}`` gives every gradient phase N
    steps (evaluated at N/2 and N). Examples:
    ``noise40``, ``noise40-lr0.08-y``, ``noise160+greedy``, ``best+qo-4+pf``."""
    if name.endswith("+pf"):
        return replace(parse_config(name[:-len("+pf")]), postfilter=True)
    if "+qo" in name:
        name, offs = name.rsplit("+qo", 1)
        try:
            offsets = tuple(float(v) for v in offs.split("_"))
        except ValueError:
            raise ValueError(f"+qo takes quality offsets joined by '_', got {offs!r}") from None
        return replace(parse_config(name), quality_offsets=offsets)
    if "+it" in name:  # e.g. best+it200: every gradient phase of a named preset runs N steps
        name, n = name.rsplit("+it", 1)
        base = parse_config(name)
        phases = tuple(replace(ph, iters=int(n), eval_every=max(1, int(n) // 2))
                       for ph in base.phases)
        return replace(base, phases=phases)
    if "+ft" in name:  # e.g. balanced+ft10-lr0.0002-l0.053-s0.5: a named preset fine-tunes g_a
        name, ft = name.rsplit("+ft", 1)
        head, *opts = ft.split("-")
        kw = {"encoder_finetune": True, "finetune_iters": int(head)}
        for o in opts:
            for prefix, key in (("lr", "finetune_lr"), ("l", "finetune_max_lambda"),
                                ("s", "finetune_share")):
                if o.startswith(prefix):
                    kw[key] = float(o[len(prefix):])
                    break
            else:
                raise ValueError(f"unknown +ft option {o!r} (-lr, -l, -s)")
        return replace(parse_config(name), **kw)
    if name in CONFIGS:
        return CONFIGS[name]
    greedy = GreedySearch()
    if "+greedy" in name:
        name, g = name.split("+greedy")
        greedy = GREEDY
        for o in g.split("-")[1:]:
            if o == "noscreen":  # a step's candidates flipped at once, verified by true cost
                greedy = replace(greedy, screen=False)
            elif o == "fresh":  # coding maps recomputed after every changed step
                greedy = replace(greedy, fresh_maps=True)
            elif o == "rev":  # the MSP steps finest first
                greedy = replace(greedy, order="reverse")
            elif o == "curv":  # second-order distortion term in the candidate screen
                greedy = replace(greedy, curvature=True)
            elif o in ("fp32", "fp32cl", "bf16"):  # precision of the search's proxy synthesis
                greedy = replace(greedy, precision=o)
            elif o[:1] in "ftcnvpsm" and o[1:]:
                field = {"f": "fraction", "t": "threshold", "c": "chunks", "n": "max_evals",
                         "v": "verify_every", "p": "passes", "s": "time_share",
                         "m": "merge"}[o[0]]
                greedy = replace(greedy, **{field: type(getattr(greedy, field))(o[1:])})
            else:
                raise ValueError(f"unknown greedy option {o!r}")
    phases, finetune = [], {}
    for k, part in enumerate(name.split("/") if name else []):
        head, *opts = part.split("-")
        if k == 0 and head.startswith("ft") and head[2:].isdigit():  # fine-tune g_a first
            finetune = {"encoder_finetune": True, "finetune_iters": int(head[2:])}
            for o in opts:
                if not o.startswith("lr"):
                    raise ValueError(f"unknown option {o!r} in {part!r} (ft takes -lr only)")
                finetune["finetune_lr"] = float(o[2:])
            continue
        mode = head.rstrip("0123456789")
        if mode not in RATE_MODES or mode == head:
            hint = " (a search alone starts with '+': '+greedy-...')" if "greedy" in part else ""
            raise ValueError(f"unknown configuration part {part!r}: a phase is "
                             f"{{{'|'.join(RATE_MODES)}}}{{iters}}[-options]{hint}")
        iters = int(head[len(mode):])
        kw: dict = {"mode": mode, "name": f"{mode}{k}"}
        for o in opts:
            if o.startswith("lrf"):
                kw["lr_final"] = float(o[3:])
            elif o.startswith("lr"):
                kw["lr"] = float(o[2:])
            elif o in ("y", "ys", "yz", "yzs"):
                kw["opt"] = tuple(o)
            elif o in ("fp32", "fp32cl", "bf16"):
                kw["precision"] = o
            elif o.startswith("e"):
                kw["evals"] = int(o[1:])
            elif o.startswith("q"):  # a quality of the six-anchor scale of sessions 1-9
                kw["min_lambda"] = six_anchor_lambda(float(o[1:]))
            elif o.startswith("l"):
                kw["min_lambda"] = float(o[1:])
            else:
                raise ValueError(f"unknown option {o!r} in {part!r}")
        phases.append(lof(iters, **kw))
    return Preset(phases=tuple(phases), greedy=greedy, **finetune)


def crop(name: str, width: int = 768, height: int = 512) -> torch.Tensor:
    """(1, 3, height, width) in [0, 1]: the photo resized (Lanczos) to cover 768x512, centred
    (a Kodak-sized picture); a smaller size is the centre of that picture (same scale)."""
    im = Image.open(TRAIN / name).convert("RGB")
    s = max(768 / im.width, 512 / im.height)
    im = im.resize((max(768, round(im.width * s)), max(512, round(im.height * s))),
                   Image.LANCZOS)
    left, top = (im.width - width) // 2, (im.height - height) // 2
    a = np.asarray(im.crop((left, top, left + width, top + height)))
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)


def run_one(model, x, quality: float, preset: Preset, budget: float | None) -> dict:
    xp, hw = pad_to_multiple(x, model.cfg.pad_multiple)
    t = quality_to_position(model.cfg, quality)
    t0 = time.perf_counter()
    if not preset.optimizes:
        with torch.no_grad():
            res = model.compress(xp, t, postfilter=preset.postfilter)
        cost, stats = rd_cost_of(model, res, xp, hw, t), None
    else:
        out = optimize_latents_ex(model, xp, hw, t, preset, time_budget=budget,
                                  postfilter=preset.postfilter)
        res, cost, stats = out.result, out.stats.final_cost, out.stats
    seconds = time.perf_counter() - t0
    bpp, psnr = measure(res, xp, hw)
    row = {"bpp": bpp, "psnr": psnr, "cost": cost, "seconds": seconds}
    if res.t is not None and res.t != t:  # the quality mode decision moved it
        row["coded_quality"] = round(position_to_quality(model.cfg, res.t), 2)
    if stats is not None:
        row.update(iterations=stats.iterations, evaluations=stats.evaluations,
                   eval_seconds=stats.eval_seconds, iteration_seconds=stats.iteration_seconds,
                   greedy_kept=stats.greedy_kept, greedy_tried=stats.greedy_tried,
                   stopped_by_budget=stats.stopped_by_budget, precision=stats.proxy_precision,
                   history=stats.history)
    return row


def _cost_change(ref: dict, row: dict) -> float:
    """Change of the true RD cost of ``row`` against ``ref`` (same image and quality), percent."""
    return 100 * (row["cost"] - ref["cost"]) / ref["cost"]


def summarise(rows: list[dict], configs: list[str], images: list[str],
              qualities: list[float]) -> str:
    by = {(r["config"], r["image"], r["quality"]): r for r in rows}
    lines = ["| config | BD-rate vs fast | RD-cost change at equal lambda | s / encode | "
             "iterations | evaluations | images |", "|---|---:|---:|---:|---:|---:|---:|"]
    for c in configs:
        bds, dcost, secs, its, evs, n_img = [], [], [], [], [], 0
        for im in images:
            pts = [(by.get(("fast", im, q)), by.get((c, im, q))) for q in qualities]
            if not all(a and b for a, b in pts):
                continue
            n_img += 1
            bd = bd_rate([a["bpp"] for a, _ in pts], [a["psnr"] for a, _ in pts],
                         [b["bpp"] for _, b in pts], [b["psnr"] for _, b in pts])
            if bd.ok:
                bds.append(bd.value)
            for a, b in pts:
                dcost.append(_cost_change(a, b))
                secs.append(b["seconds"])
                its.append(b.get("iterations", 0))
                evs.append(b.get("evaluations", 0))
        if not n_img:
            continue
        bd_txt = f"{np.mean(bds):+.2f}%" if bds else "n/a"
        lines.append(f"| {c} | {bd_txt} | {np.mean(dcost):+.2f}% | {np.mean(secs):.1f} | "
                     f"{np.mean(its):.0f} | {np.mean(evs):.1f} | {n_img} |")
    return "\n".join(lines)


def per_quality(rows: list[dict], configs: list[str], images: list[str],
                qualities: list[float]) -> str:
    """Mean RD-cost change against ``fast`` at equal lambda, per quality (the images that have
    both), and the per-image values; shows where in the rate range an ingredient pays."""
    by = {(r["config"], r["image"], r["quality"]): r for r in rows}
    head = " | ".join(f"q{q:g}" for q in qualities)
    lines = [f"| config | {head} |", "|---|" + "---:|" * len(qualities)]
    for c in configs:
        if c == "fast":
            continue
        cells = []
        for q in qualities:
            ch = [_cost_change(by[("fast", im, q)], by[(c, im, q)])
                  for im in images if (c, im, q) in by and ("fast", im, q) in by]
            cells.append(f"{np.mean(ch):+.2f}% ({' / '.join(f'{v:+.1f}' for v in ch)})"
                         if ch else "–")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bench_iteration(model, repeats: int = 7, quality: float = 60.0) -> str:
    """Median seconds of one gradient iteration (proxy forward + backward), of the proxy
    synthesis' forward pass alone and of one true-cost evaluation (a real coding) on the first
    crop, the variants interleaved so that they see the same machine load. The bf16 variants
    only where the CPU has native bf16 kernels (elsewhere bf16 convolutions are about 10x slower,
    scripts/cpu_check.py, and ``auto`` never picks them)."""
    from adapix.hardware import bf16_is_fast
    from adapix.model import Latents
    from adapix.optimize import proxy_loss, rd_cost_true
    from adapix.optimize.proxy import ProxySynthesis, _factorized_bits, _frozen

    xp, hw = pad_to_multiple(crop(IMAGES[0]), model.cfg.pad_multiple)
    t = quality_to_position(model.cfg, quality)
    with torch.no_grad():
        lat = model.analyse(xp, torch.tensor([t]))
    times: dict[str, list[float]] = {}
    with _frozen(model):
        fp32 = ProxySynthesis(model, t, False, "fp32")
        fp32cl = ProxySynthesis(model, t, False, "fp32cl")
        with torch.no_grad():
            z_hat = torch.round(lat.z)
            hyper = (_factorized_bits(model.z_prior, z_hat), model.h_s(z_hat))

        def step(synth, fixed_z):
            leaves = [v.detach().clone().requires_grad_(True) for v in (lat.y, lat.z, lat.s)]
            loss, _, _ = proxy_loss(model, Latents(*leaves), t, xp, hw, False, "ste",
                                    synthesis=synth, hyper=hyper if fixed_z else None)
            loss.backward()

        y_hat, s_hat = torch.round(lat.y), torch.round(lat.s)

        def forward(synth):
            with torch.no_grad():
                synth(y_hat, s_hat)

        variants = {"synthesis forward only, float32 module": lambda: forward(fp32),
                    "synthesis forward only, fp32cl": lambda: forward(fp32cl),
                    "float32 proxy (the model's synthesis), y z s": lambda: step(fp32, False),
                    "fp32cl proxy (channels_last, sub-pixel last layer), y z s":
                        lambda: step(fp32cl, False),
                    "fp32cl proxy, y s (z fixed: h_s cached)": lambda: step(fp32cl, True)}
        if bf16_is_fast():
            bf16 = ProxySynthesis(model, t, False, "bf16")
            variants.update({"bf16 proxy, y z s": lambda: step(bf16, False),
                             "bf16 proxy, y s (z fixed: h_s cached)": lambda: step(bf16, True)})
        variants["true-cost evaluation (real coding)"] = \
            lambda: rd_cost_true(model, lat, t, xp, hw, False)
        for f in variants.values():  # warm-up
            f()
        for _ in range(repeats):
            for name, f in variants.items():
                t0 = time.perf_counter()
                f()
                times.setdefault(name, []).append(time.perf_counter() - t0)
    lines = ["| what (768x512, one image) | median s | min s |", "|---|---:|---:|"]
    for name, v in times.items():
        lines.append(f"| {name} | {np.median(v):.3f} | {min(v):.3f} |")
    return "\n".join(lines)


def _print_row(row: dict, note: str = "") -> None:
    print(f"{row['config']:>18} {row['image'][:24]:>24} q{row['quality']:>4.0f}: "
          f"{row['bpp']:.4f} bpp {row['psnr']:.3f} dB cost {row['cost']:.5f} "
          f"{row['seconds']:.1f} s it {row.get('iterations', 0)}{note}", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="fast,balanced,best")
    p.add_argument("--images", type=int, default=len(IMAGES), help="use the first N photos")
    p.add_argument("--qualities", default=",".join(map(str, QUALITIES)))
    p.add_argument("--budget", default="none",
                   help="time budget per encode: 'none', 'default' (the profile's) or seconds")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", default="768x512", help="WxH of the crops (default 768x512)")
    p.add_argument("--out", default="tune_profiles.jsonl", help="JSON-lines results (reused)")
    p.add_argument("--model", default=None, help="weights (default: the shipped model)")
    p.add_argument("--list", action="store_true", help="list the configurations and exit")
    p.add_argument("--bench-iteration", action="store_true",
                   help="time one gradient iteration before/after the speed-ups, and exit")
    args = p.parse_args(argv)
    if args.list:
        for name, preset in CONFIGS.items():
            print(name, json.dumps(asdict(preset)))
        return 0
    torch.set_num_threads(args.threads)
    if args.bench_iteration:
        codec = Codec(args.model) if args.model else Codec()
        print(f"threads={args.threads}")
        print(bench_iteration(codec.model))
        return 0
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    try:
        presets = {c: parse_config(c) for c in configs}
    except ValueError as exc:
        p.error(str(exc))
    if "fast" not in configs:
        configs.insert(0, "fast")
        presets["fast"] = CONFIGS["fast"]
    qualities = [float(q) for q in args.qualities.split(",")]
    images = IMAGES[: args.images]
    codec = Codec(args.model) if args.model else Codec()
    model = codec.model
    out = Path(args.out)
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    width, height = (int(v) for v in args.size.lower().split("x"))
    tag = (f"{codec.model_id}:{codec.loaded.weights_hash.hex()[:8]}|threads={args.threads}"
           f"|budget={args.budget}")
    if (width, height) != (768, 512):
        tag += f"|size={width}x{height}"
    done = {(r["config"], r["image"], r["quality"]) for r in rows if r["tag"] == tag}
    profile_of = {"balanced": "balanced", "best": "best"}
    for name in configs:
        preset = presets[name]
        if args.budget == "none":
            budget = None
        elif args.budget == "default":
            prof = PROFILES.get(profile_of.get(name, ""))
            budget = prof.time_budget if prof is not None else None
        else:
            budget = float(args.budget)
        for im in images:
            x = None
            for q in qualities:
                if (name, im, q) in done:  # reprinted (its time, iterations) from the file
                    row = next(r for r in rows if r["tag"] == tag
                               and (r["config"], r["image"], r["quality"]) == (name, im, q))
                    _print_row(row, " (cached)")
                    continue
                x = crop(im, width, height) if x is None else x
                row = run_one(model, x, q, preset, budget)
                row.update(config=name, image=im, quality=q, tag=tag, budget=budget)
                rows.append(row)
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                _print_row(row)
    sel = [r for r in rows if r["tag"] == tag]
    print(f"\n{tag}; {len(images)} images x qualities {qualities}\n")
    print(summarise(sel, configs, images, qualities))
    print("\nRD-cost change against fast per quality: mean (per image)\n")
    print(per_quality(sel, configs, images, qualities))
    return 0


if __name__ == "__main__":
    sys.exit(main())
