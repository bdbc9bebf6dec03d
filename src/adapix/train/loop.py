"""The training loop: rate + lambda * distortion, variable rate, resumable, CPU-fast.

Loss per sample (CompressAI convention, images in [0,1]):

    L = bits / pixels + lambda(t) * 255**2 * MSE(x, x_hat)      (or (1 - MS-SSIM) * lambda * 30)

with the quality position t drawn uniformly per sample, so one model covers the whole range.
Speed on CPU: bf16 autocast (entropy terms stay float32), channels_last and torch.compile.
Checkpoints (model, optimiser, step, RNG, wall time) are written atomically every
``ckpt_minutes`` and on SIGTERM/SIGINT; ``resume`` continues exactly where it stopped.
Under ``torchrun`` the model is wrapped in DistributedDataParallel (gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from ..config import ModelConfig
from ..hardware import training_bf16, tune_allocator
from ..model import AdapixModel, adapt_state_to_lambdas
from ..ratecond import add_rate_modulation
from ..widen import new_latent_mask, widen_state
from ..weights import build_tables, export_weights
from .checkpoint import atomic_save, checkpoint_postfilter_trained
from .config import RunConfig, TrainConfig
from .data import CropSampler, list_images, load_images, load_rgb


@dataclass
class ValResult:
    step: int
    quality: float
    bpp: float        # real bytes of the three streams
    est_bpp: float
    psnr: float


def lr_at(cfg: TrainConfig, step: int) -> float:
    lr = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup))
    start = cfg.steps - cfg.decay_steps
    if step > start and cfg.decay_steps > 0:
        p = min(1.0, (step - start) / cfg.decay_steps)
        lr *= cfg.lr_floor + (1 - cfg.lr_floor) * 0.5 * (1 + math.cos(math.pi * p))
    return lr


def ramp_fraction(step: int, length: int) -> float:
    """How far a linear ramp of ``length`` steps is at ``step``: step / length, and 1 once it is
    over or when it is off (``length`` 0). The curricula below (lambda range, rate weight, new
    channels' rate) are all of this shape."""
    return 1.0 if not length or step >= length else step / length


def position_range(cfg: TrainConfig, anchors: int, step: int) -> tuple[float, float]:
    """The range [lo, hi] of quality positions drawn at ``step``: [t_min, t_max] (t_max < 0: the
    last anchor), except during a lambda curriculum (``t_ramp`` > 0, issue 3's recipe search):
    over the first ``t_ramp`` steps the range widens linearly from the single position
    ``t_ramp_center`` (-1: the middle of [t_min, t_max]) to the whole of it, so the transforms
    first learn one rate-distortion trade-off, then all of them."""
    t_min, t_max = cfg.t_bounds(anchors)
    f = ramp_fraction(step, cfg.t_ramp)
    if f >= 1:
        return t_min, t_max
    center = (t_min + t_max) / 2 if cfg.t_ramp_center == -1 else cfg.t_ramp_center
    return center + (t_min - center) * f, center + (t_max - center) * f


def sample_positions(cfg: TrainConfig, anchors: int, batch: int, gen: torch.Generator,
                     step: int) -> torch.Tensor:
    """Quality positions t (batch,) in [lo, hi] = ``position_range(cfg, anchors, step)``: lo +
    (hi - lo) * u ** t_power with u uniform, so t_power = 1 is uniform and t_power < 1 draws the
    high-quality end more often (density of the fraction s: s ** (1/p - 1) / p). One uniform
    draw per image whatever the step, so a curriculum does not shift the generator's stream."""
    lo, hi = position_range(cfg, anchors, step)
    return lo + (hi - lo) * torch.rand(batch, generator=gen) ** cfg.t_power


def new_channel_rate_weight(model: ModelConfig, cfg: TrainConfig, step: int
                            ) -> torch.Tensor | None:
    """The per-channel rate weight (M,) of a model widened in M from ``cfg.new_rate_from_m``
    channels (adapix.widen: each group's new channels come last): 1 for the old channels,
    min(1, step / new_rate_ramp) for the new ones; None when no ramp is set or it is over. A
    curriculum: the new channels learn to carry information before they pay their full rate,
    instead of staying at the zero-rate saddle where they start (docs/training.md, session 21)."""
    f = ramp_fraction(step, cfg.new_rate_ramp)
    if f >= 1:
        return None
    return torch.where(_new_channels(model, cfg.new_rate_from_m), f, 1.0)


@functools.lru_cache(maxsize=4)
def _new_channels(model: ModelConfig, from_m: int) -> torch.Tensor:
    """The mask (M,) of the latent channels added by widening ``model`` from ``from_m``: built
    once per run, not at every step of the ramp (read only: torch.where does not change it)."""
    return new_latent_mask(dataclasses.replace(model, M=from_m), model)


STEP_PARTS = ("forward", "backward", "clip", "optimiser")
"""The timed parts of :meth:`Trainer.train_step`, in order."""


def rate_scale_at(cfg: TrainConfig, step: int) -> float:
    """The weight of the whole rate term at ``step``: ``rate_ramp_start`` rising linearly to 1
    over the first ``rate_ramp`` steps, then 1 (always 1 when ``rate_ramp`` is 0). An
    autoencoder-first curriculum (issue 3's recipe search): the transforms first learn to
    reconstruct, then to pay for their bits."""
    f = ramp_fraction(step, cfg.rate_ramp)
    return 1.0 if f >= 1 else cfg.rate_ramp_start + (1.0 - cfg.rate_ramp_start) * f


def rd_loss(fwd, model: AdapixModel, x: torch.Tensor, t: torch.Tensor, bf16: bool,
            device_type: str = "cpu", postfilter: bool = False,
            rate_weight: torch.Tensor | None = None, rate_scale: float = 1.0
            ) -> tuple[torch.Tensor, dict]:
    """The training objective, mean over the batch of rate_scale * bits / pixels + lambda(t)
    255^2 MSE.

    x (B,3,H,W) in [0,1], t (B,) quality positions; ``fwd`` is the (maybe compiled or DDP-wrapped)
    forward of ``model``; ``rate_weight`` (M,) optional, each latent channel's weight in the
    rate (new_channel_rate_weight); ``rate_scale`` the whole rate term's weight
    (rate_scale_at). Returns the loss and the batch means of bpp (weighted by ``rate_weight``,
    not by ``rate_scale``), MSE and PSNR (dB)."""
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
        out = fwd(x, t, postfilter=postfilter, rate_weight=rate_weight)
    x_hat = out.x_hat.float()
    pixels = x.shape[2] * x.shape[3]
    bpp = out.bits.float() / pixels
    mse = ((x_hat - x) ** 2).flatten(1).mean(1)
    loss = (rate_scale * bpp + model.lam(t) * 255 ** 2 * mse).mean()
    return loss, {"bpp": bpp.mean().item(), "mse": mse.mean().item(),
                  "psnr": float(-10 * torch.log10(mse.detach().clamp_min(1e-10)).mean())}


def _is_postfilter(name: str) -> bool:
    return name.startswith("postfilter.") or name.startswith("generator.post")


ENCODER_ONLY = ("g_a.", "h_a.", "syntax.", "log_gain", "rate_mod.a_")
"""Parameters that only the encoder uses: g_a (with its modulation tables), h_a, the model
stream's encoder and the latent's gains. Everything else is read by the decoder."""


SYNTHESIS_ONLY = ("g_s.", "generator.hidden.", "generator.synth.", "rate_mod.s_")
"""Parameters of the synthesis side of the decoder: g_s (with its blocks, head and modulation
tables) and the model stream's generator of its per-image weights. The entropy models, which set
the rate, are not among them."""


def _trained_in(stage: str, name: str) -> bool:
    if stage == "postfilter":
        return _is_postfilter(name)
    if stage == "encoder":
        return name.startswith(ENCODER_ONLY)
    if stage == "head":
        return name.startswith("g_s.head.")
    if stage == "synthesis":
        return name.startswith(SYNTHESIS_ONLY)
    return not _is_postfilter(name)


def trainable_parameters(model: AdapixModel, stage: str) -> list[torch.nn.Parameter]:
    """Stage "main" trains everything but the post-filter; stage "postfilter" only it; stage
    "encoder" only the parameters of :data:`ENCODER_ONLY`, so the decoder (and every file it
    decodes) stays bit for bit the same: the amortised counterpart of latent overfitting; stage
    "head" only g_s's full-resolution head (``model.synthesis_head``), the rest frozen; stage
    "synthesis" only :data:`SYNTHESIS_ONLY`, so every file keeps its bits (the encoder and the
    entropy models are fixed) and only its reconstruction changes: the loss is distortion at a
    fixed rate, and no gradient flows through g_a or the entropy models (g_s dominates the cost all
    the same: 0.27-0.36 it/s against 0.24-0.28 for a main step, float32 on an AVX2 CPU,
    ``scripts/step_profile.py``, docs/training.md session 29). Sets requires_grad accordingly and
    returns the trainable parameters."""
    for name, p in model.named_parameters():
        p.requires_grad_(_trained_in(stage, name))
    return [p for p in model.parameters() if p.requires_grad]


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss(a.float(), b.float()).item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def split_data(cfg: TrainConfig) -> tuple[list[Path], list[Path]]:
    paths = list_images(cfg.data)
    if cfg.val_data:
        return paths, list_images(cfg.val_data)
    # deterministic hold-out: every k-th image
    k = max(1, len(paths) // max(1, cfg.val_holdout))
    val = paths[::k][: cfg.val_holdout]
    held = set(val)
    return [p for p in paths if p not in held], val


@torch.no_grad()
def validate(model: AdapixModel, images: list[np.ndarray], cfg: TrainConfig, step: int
             ) -> list[ValResult]:
    """Real bitstreams: compress + decompress of each validation image at a few qualities (with
    the post-filter in stage "postfilter", the stage that trains it)."""
    from ..images import crop, pad_to_multiple
    from ..model import quality_to_position

    model.eval()
    build_tables(model)
    post = cfg.stage == "postfilter"
    out = []
    for q in cfg.val_qualities:
        t = quality_to_position(model.cfg, q)
        bpp = est = psnr = 0.0
        for img in images:
            x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
            xp, hw = pad_to_multiple(x, model.cfg.pad_multiple)
            res = model.compress(xp, t, postfilter=post)
            x_dec = model.decompress(res.streams, xp.shape[-2:], t, postfilter=post)
            if not torch.equal(x_dec, res.x_hat):
                raise RuntimeError("validation: decoded image differs from encoder reconstruction")
            n = hw[0] * hw[1]
            s = res.streams
            bpp += 8 * (len(s.model_stream) + len(s.hyper) + len(s.content)) / n
            est += res.est_bits / n
            rec = (crop(x_dec, hw) * 255).round() / 255
            psnr += _psnr(rec, x)
        k = len(images)
        out.append(ValResult(step, q, bpp / k, est / k, psnr / k))
    model.train()
    return out


class Trainer:
    def __init__(self, run: RunConfig, resume: bool = True, progress: bool = True):
        tune_allocator()  # large tensors from the heap, not mmap (adapix.hardware)
        self.run, self.cfg = run, run.train
        self.out = Path(self.cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if self.cfg.device == "cuda" else "gloo")
        self.rank = dist.get_rank() if self.distributed else 0
        self.device = torch.device(self.cfg.device)
        self.bf16 = training_bf16(self.cfg.bf16, self.device.type)
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        torch.manual_seed(self.cfg.seed + self.rank)
        self.model = AdapixModel(run.model).to(self.device)
        if self.cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.params = self._trainable()
        self.opt = torch.optim.Adam(self.params, lr=self.cfg.lr)
        self.gen = torch.Generator().manual_seed(self.cfg.seed * 1000 + self.rank)
        self.step = 0
        self.elapsed = 0.0
        # whether the exported weights may use the post-filter: it is trained in its own stage,
        # and an encoder stage keeps the one it starts from (the main stage changes the decoder)
        self.postfilter_trained = self.cfg.stage == "postfilter"
        self.ckpt_path = self.out / "checkpoint.pt"
        if resume and self.ckpt_path.exists():
            self._load(self.ckpt_path)
        elif self.cfg.init:
            self._init_from(self.cfg.init)
        self.net = self.model
        if self.distributed:
            self.net = torch.nn.parallel.DistributedDataParallel(self.model)
        if self.cfg.compile:
            # The convolutional transforms dominate the cost; compiling them alone measured
            # 0.34 s/step (8 x 192^2, bf16) against 0.56 s for the whole model, which also
            # produced NaN losses, and compiles in 40 s instead of 4 minutes.
            for name in ("g_a", "g_s", "h_a", "h_s"):
                getattr(self.model, name).compile()
        self.fwd = self.net
        self.stop = False
        self.skipped = 0

    def _trainable(self):
        return trainable_parameters(self.model, self.cfg.stage)

    def _init_from(self, path: str) -> None:
        """Starts from a weights file or checkpoint. Its model config must match, except that the
        lambda anchors may differ (the gain tables are re-gridded, :func:`regrid_gains`), N,
        M and g_s's channels Ns may grow (the model is widened so that it computes the same
        function, :func:`adapix.widen.widen_state`), the rate modulation may be turned on (at the
        identity, :func:`adapix.ratecond.add_rate_modulation`), the residual blocks of g_a
        and g_s may grow in number (the new ones start as the identity,
        ``adapix.layers.ResidualBlock``) and g_s's full-resolution head may be added (it
        starts at zero, ``adapix.transforms.FullResHead``)."""
        if path.endswith(".safetensors"):
            from ..weights import load_weights
            loaded = load_weights(path)
            state, src_cfg = loaded.model.state_dict(), dataclasses.asdict(loaded.model.cfg)
            src_post = loaded.postfilter_trained
        else:
            ck = torch.load(path, map_location="cpu", weights_only=False)
            state = ck["model"]
            src_cfg = dataclasses.asdict(ModelConfig.from_dict(ck["model_config"]))
            src_post = checkpoint_postfilter_trained(ck)
        if self.cfg.stage == "encoder":
            self.postfilter_trained = src_post
        own = dataclasses.asdict(self.run.model)
        src_mod = src_cfg["rate_modulation"]
        # g_s's channels by what they are (synthesis_channels 0 means N), so widening N widens
        # them too unless set apart
        src_cfg["Ns"] = src_cfg["synthesis_channels"] or src_cfg["N"]
        own["Ns"] = self.run.model.Ns
        # parts that may be added at the identity: config key -> (parameter prefix, what)
        blocks = {"analysis_blocks": ("g_a.blocks.", "g_a's residual blocks"),
                  "synthesis_blocks": ("g_s.blocks.", "g_s's residual blocks"),
                  "synthesis_head": ("g_s.head.", "g_s's full-resolution head")}
        grows = ("N", "M", "Ns", *blocks)
        differ = sorted(k for k in own if k not in ("lambdas", "rate_modulation",
                                                    "synthesis_channels", *grows)
                        and own[k] != src_cfg[k])
        if src_mod and not own["rate_modulation"]:
            differ.append("rate_modulation")
        differ += [f"{k} ({src_cfg[k]} > {own[k]})" for k in grows if src_cfg[k] > own[k]]
        if 0 < src_cfg["synthesis_head"] < own["synthesis_head"]:
            differ.append("synthesis_head (it can only be added, not widened)")
        added = [k for k in blocks if src_cfg[k] < own[k]]
        wide = ("N", "M", "Ns")
        if added and any(src_cfg[k] != own[k] for k in wide):
            differ.append(f"{' and '.join(added)} together with N, M or Ns")
        if differ:
            raise ValueError(f"train.init {path}: its model config differs in "
                             f"{', '.join(differ)}; only model.lambdas may differ, model.N, "
                             "model.M, model.synthesis_channels (Ns), model.analysis_blocks or "
                             "model.synthesis_blocks may grow, "
                             "model.synthesis_head may be added and model.rate_modulation may "
                             "be turned on")
        if own["rate_modulation"] and not src_mod:
            state = add_rate_modulation(state, len(src_cfg["lambdas"]), src_cfg["N"],
                                        src_cfg["Ns"])
            if self.rank == 0:
                print("added the rate modulation of the transforms (at the identity)")
        state = adapt_state_to_lambdas(state, tuple(src_cfg["lambdas"]), self.run.model.lambdas)
        fresh = self.model.state_dict() if added else {}
        for k in added:
            prefix, what = blocks[k]
            state = {**{n: v for n, v in fresh.items() if n.startswith(prefix)}, **state}
            if self.rank == 0:
                print(f"added {what} (model.{k} {src_cfg[k]} -> {own[k]}, at the identity)")
        if any(src_cfg[k] != own[k] for k in wide):
            src_model_cfg = dataclasses.replace(
                self.run.model, N=src_cfg["N"], M=src_cfg["M"],
                synthesis_channels=src_cfg["synthesis_channels"])
            state = widen_state(state, src_model_cfg, self.model,
                                new_sigma=self.cfg.init_new_sigma or None,
                                new_latent=self.cfg.init_new_latent)
            if self.rank == 0:
                print("widened the model from " + ", ".join(f"{k}={src_cfg[k]}" for k in wide)
                      + " to " + ", ".join(f"{k}={own[k]}" for k in wide))
        self.model.load_state_dict(state)

    def _load(self, path: Path) -> None:
        ck = torch.load(path, map_location="cpu", weights_only=False)
        # through the dataclass, so fields added since the checkpoint was written take defaults
        if ModelConfig.from_dict(ck["model_config"]) != self.run.model:
            raise ValueError(f"{path} was trained with another model config; use a new --out")
        self.model.load_state_dict(ck["model"])
        self.postfilter_trained = checkpoint_postfilter_trained(ck)
        try:
            self.opt.load_state_dict(ck["opt"])
        except ValueError as exc:  # e.g. the set of trained parameters changed (new stage)
            print(f"optimiser state not restored ({exc}); starting it afresh")
        self.step, self.elapsed = ck["step"], ck["elapsed"]
        torch.set_rng_state(ck["torch_rng"])
        self.gen.set_state(ck["gen_rng"])
        if self.rank == 0:
            print(f"resumed from {path} at step {self.step} ({self.elapsed / 3600:.2f} h)")

    def save(self) -> None:
        if self.rank != 0:
            return
        atomic_save({"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                      "step": self.step, "elapsed": self.elapsed,
                      "torch_rng": torch.get_rng_state(), "gen_rng": self.gen.get_state(),
                      "model_config": dataclasses.asdict(self.run.model),
                      "postfilter_trained": self.postfilter_trained,
                      "train_config": dataclasses.asdict(self.cfg)}, self.ckpt_path)

    def _on_signal(self, signum, frame):  # noqa: ARG002
        self.stop = True

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        t = sample_positions(self.cfg, len(self.run.model.lambdas), x.shape[0], self.gen,
                             self.step)
        return rd_loss(self.fwd, self.model, x, t, self.bf16, self.device.type,
                       postfilter=self.cfg.stage == "postfilter",
                       rate_weight=new_channel_rate_weight(self.run.model, self.cfg, self.step),
                       rate_scale=rate_scale_at(self.cfg, self.step))

    def train_step(self, x: torch.Tensor, lr: float, times: dict[str, float] | None = None
                   ) -> tuple[torch.Tensor, dict] | None:
        """One optimiser step on the batch ``x`` (B, 3, H, W) in [0, 1] at learning rate ``lr``:
        forward (``loss``), backward, gradient clipping, then the optimiser, and ``self.step`` + 1.
        Returns (loss, stats), or None when the loss or the gradient norm was not finite: such a
        step is dropped, never applied (more than 100 of them stop training). ``times``, when
        given, gets the seconds of each part of :data:`STEP_PARTS` added (scripts/step_profile.py)."""
        for g in self.opt.param_groups:
            g["lr"] = lr
        x = x.to(self.device)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        t0 = time.perf_counter()
        loss, stats = self.loss(x)
        t1 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        t3 = time.perf_counter()
        if not (torch.isfinite(loss) and torch.isfinite(norm)):
            self.skipped += 1
            if self.skipped > 100:
                raise RuntimeError("more than 100 non-finite training steps; stopping")
            return None
        self.opt.step()
        self.step += 1
        if times is not None:
            marks = (t0, t1, t2, t3, time.perf_counter())
            for part, a, b in zip(STEP_PARTS, marks, marks[1:]):
                times[part] = times.get(part, 0.0) + b - a
        return loss, stats

    def fit(self) -> Path | None:
        cfg = self.cfg
        train_paths, val_paths = split_data(cfg)
        (self.out / "train_list.txt").write_text("\n".join(map(str, train_paths)))
        data = load_images(train_paths, cfg.crop, cfg.max_side, self.progress and self.rank == 0)
        val_imgs = [a for a in (load_rgb(p, cfg.max_side) for p in val_paths[: cfg.val_images])
                    if a is not None]
        sampler = CropSampler(data, cfg.crop, cfg.batch, self.gen)
        if self.rank == 0:
            print(f"training on {len(data)} images ({data.skipped} skipped), "
                  f"validating on {len(val_imgs)}; step {self.step}/{cfg.steps}")
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        log_path = self.out / "log.csv"
        new_log = not log_path.exists()
        log = open(log_path, "a", newline="")
        writer = csv.writer(log)
        if new_log:
            writer.writerow(["step", "hours", "loss", "bpp", "psnr", "lr", "it_per_s", "kind",
                             "quality", "real_bpp", "est_bpp", "val_psnr"])
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (self.progress and self.rank == 0),
                   dynamic_ncols=True)
        last_ckpt = time.time()
        t_log, n_log = time.time(), 0
        acc = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0}
        self.model.train()
        try:
            while self.step < cfg.steps and not self.stop:
                t0 = time.time()
                lr = lr_at(cfg, self.step)
                done = self.train_step(sampler(), lr)
                if done is None:
                    continue
                loss, stats = done
                self.elapsed += time.time() - t0
                acc["loss"] += loss.item()
                acc["bpp"] += stats["bpp"]
                acc["psnr"] += stats["psnr"]
                n_log += 1
                bar.update(1)
                if self.step % cfg.log_every == 0 and self.rank == 0:
                    ips = n_log / (time.time() - t_log)
                    row = {k: v / n_log for k, v in acc.items()}
                    writer.writerow([self.step, f"{self.elapsed / 3600:.4f}", f"{row['loss']:.4f}",
                                     f"{row['bpp']:.4f}", f"{row['psnr']:.3f}", f"{lr:.2e}",
                                     f"{ips:.3f}", "train", "", "", "", ""])
                    log.flush()
                    bar.set_postfix(loss=f"{row['loss']:.3f}", bpp=f"{row['bpp']:.3f}",
                                    psnr=f"{row['psnr']:.2f}", it_s=f"{ips:.2f}")
                    acc = dict.fromkeys(acc, 0.0)
                    t_log, n_log = time.time(), 0
                if self.rank == 0 and cfg.val_every and self.step % cfg.val_every == 0 and val_imgs:
                    for r in validate(self.model, val_imgs, cfg, self.step):
                        writer.writerow([self.step, f"{self.elapsed / 3600:.4f}", "", "", "", "",
                                         "", "val", r.quality, f"{r.bpp:.4f}", f"{r.est_bpp:.4f}",
                                         f"{r.psnr:.3f}"])
                        tqdm.write(f"val step {self.step} q={r.quality:g}: {r.bpp:.3f} bpp "
                                   f"(est {r.est_bpp:.3f}), {r.psnr:.2f} dB")
                    log.flush()
                if time.time() - last_ckpt > cfg.ckpt_minutes * 60:
                    self.save()
                    last_ckpt = time.time()
        finally:
            bar.close()
            self.save()
            log.close()
            for s, h in old.items():
                signal.signal(s, h)
        if self.step >= cfg.steps and self.rank == 0:
            return self.export()
        return None

    def export(self, path: str | None = None) -> Path:
        path = Path(path or self.cfg.export or self.out / "weights.safetensors")
        self.model.eval()
        build_tables(self.model)
        export_weights(self.model, path, self.cfg.model_id, steps=self.step,
                       postfilter_trained=self.postfilter_trained)
        print(f"exported {path}")
        return path


__all__ = ["Trainer", "validate", "lr_at", "rate_scale_at", "position_range", "STEP_PARTS"]
