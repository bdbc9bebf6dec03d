"""Short training of one ablation variant with the project's data pipeline and loss.

Every variant starts from ``torch.manual_seed(seed)`` (so the transforms get identical initial
weights) and draws its crops and quality positions from a ``torch.Generator`` seeded the same way
(so every variant sees the same batches and the same lambdas). The loss is the project trainer's
(:func:`adapix.train.loop.rd_loss`)::

    L = mean_b( (bits_y + bits_z + bits_s)_b / pixels + lambda(t_b) * 255**2 * MSE_b )

t_b uniform in [0, K-1] per sample, bf16 autocast when enabled; Adam, the learning-rate schedule of
:func:`adapix.train.loop.lr_at` (warm-up, final cosine decay), gradient clipping, non-finite steps
skipped, the post-filter not trained -- all as in the project trainer (stage "main").

Checkpoints ``<out>/<variant>.pt`` hold model, optimiser, step, RNG states and settings; a run
that finds one with the same settings continues from it (a finished one is reused as is).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ..config import ModelConfig
from ..hardware import training_bf16
from ..train.checkpoint import atomic_save
from ..train.config import TrainConfig
from ..train.data import CropSampler, ImageSet
from ..train.loop import lr_at, rd_loss, sample_positions, trainable_parameters
from .model import AblationModel, Variant, build_ablation_model


@dataclass
class TrainSettings:
    steps: int
    batch: int = 8
    crop: int = 128
    lr: float = 5e-4
    seed: int = 1
    bf16: bool = True
    threads: int = 1
    ckpt_minutes: float = 5.0

    def train_config(self) -> TrainConfig:
        """The project's TrainConfig for these settings (schedule scaled to short runs)."""
        return TrainConfig(steps=self.steps, batch=self.batch, crop=self.crop, lr=self.lr,
                           warmup=min(300, max(1, self.steps // 10)),
                           decay_steps=max(1, self.steps // 4), seed=self.seed, bf16=self.bf16,
                           channels_last=False, compile=False, threads=self.threads,
                           val_every=0)


@dataclass
class TrainSummary:
    variant: str
    steps: int
    seconds: float          # training wall time, resumed runs included
    seconds_per_step: float
    final_loss: float       # mean loss of the last 10% of the latest steps run (nan if unknown)
    skipped_steps: int
    resumed_from: int       # step of the checkpoint this run started from (0: fresh)


_FREE = ("steps", "ckpt_minutes", "threads")  # settings that may change when resuming


def _identity(cfg: ModelConfig, variant: Variant, settings: TrainSettings) -> dict:
    """What a checkpoint must match to be resumed."""
    fixed = {k: v for k, v in dataclasses.asdict(settings).items() if k not in _FREE}
    return {"model_config": dataclasses.asdict(cfg), "variant": variant.name, "settings": fixed}


def load_trained(path: Path, cfg: ModelConfig, variant: Variant) -> AblationModel:
    """The model of a checkpoint written by :func:`train_variant`, in eval mode."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    model = build_ablation_model(cfg, variant.context, variant.stream)
    model.load_state_dict(ck["model"])
    return model.eval()


def train_variant(variant: Variant, cfg: ModelConfig, settings: TrainSettings, data: ImageSet,
                  out_dir: Path, progress: bool = True) -> tuple[AblationModel, TrainSummary]:
    """Trains (or resumes, or reuses) ``variant`` for ``settings.steps`` steps; saves
    ``out_dir/<variant>.pt`` at the end, every ``ckpt_minutes`` and on an exception."""
    tc = settings.train_config()
    path = out_dir / f"{variant.name}.pt"
    old_threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    model = build_ablation_model(cfg, variant.context, variant.stream)
    params = trainable_parameters(model, "main")
    opt = torch.optim.Adam(params, lr=tc.lr)
    gen = torch.Generator().manual_seed(settings.seed * 1000)
    step, elapsed, resumed, saved_loss = 0, 0.0, 0, float("nan")
    key = _identity(cfg, variant, settings)
    if path.exists():
        ck = torch.load(path, map_location="cpu", weights_only=False)
        if {k: ck.get(k) for k in key} != key:
            raise ValueError(f"{path} was trained with other settings; use another --out")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, elapsed, saved_loss = ck["step"], ck["elapsed"], ck.get("final_loss", saved_loss)
        torch.set_rng_state(ck["torch_rng"])
        gen.set_state(ck["gen_rng"])
        resumed = step
    if step > settings.steps:
        raise ValueError(f"{path} is at step {step}, beyond --steps {settings.steps}; use another --out")

    losses: list[float] = []

    def final_loss() -> float:
        """Mean loss of the last 10% of the steps run here (else the checkpoint's value)."""
        tail = losses[-max(1, len(losses) // 10):]
        return sum(tail) / len(tail) if tail else saved_loss

    def save() -> None:
        atomic_save({**key, "model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                     "elapsed": elapsed, "torch_rng": torch.get_rng_state(),
                     "gen_rng": gen.get_state(), "final_loss": final_loss()}, path)

    sampler = CropSampler(data, tc.crop, tc.batch, gen)
    bf16 = training_bf16(tc.bf16, "cpu")
    skipped = 0
    last_ckpt = time.time()
    model.train()
    bar = tqdm(total=settings.steps, initial=step, desc=f"train {variant.name}",
               disable=not progress, dynamic_ncols=True, leave=False)
    try:
        while step < settings.steps:
            t0 = time.time()
            for g in opt.param_groups:
                g["lr"] = lr_at(tc, step)
            x = sampler()
            t = sample_positions(tc, len(cfg.lambdas), x.shape[0], gen, step)
            loss, stats = rd_loss(model, model, x, t, bf16)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
            if not (torch.isfinite(loss) and torch.isfinite(norm)):
                skipped += 1  # dropped, never applied (as the project trainer does)
                if skipped > 100:
                    raise RuntimeError(f"{variant.name}: more than 100 non-finite steps")
                continue
            opt.step()
            step += 1
            elapsed += time.time() - t0
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", bpp=f"{stats['bpp']:.3f}",
                            psnr=f"{stats['psnr']:.2f}")
            if time.time() - last_ckpt > settings.ckpt_minutes * 60:
                save()
                last_ckpt = time.time()
    finally:
        bar.close()
        save()
        torch.set_num_threads(old_threads)
    summary = TrainSummary(variant=variant.name, steps=step, seconds=elapsed,
                           seconds_per_step=elapsed / step if step else float("nan"),
                           final_loss=final_loss(),
                           skipped_steps=skipped, resumed_from=resumed)
    return model.eval(), summary


__all__ = ["TrainSettings", "TrainSummary", "train_variant", "load_trained"]
