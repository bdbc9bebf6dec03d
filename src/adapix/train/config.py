"""Training configuration: dataclasses filled from a TOML file and ``--set key=value`` overrides.

Example (configs/default.toml)::

    [model]          # adapix.config.ModelConfig fields
    N = 128
    M = 192
    [train]          # TrainConfig fields
    data = "../shared/data/train"
    steps = 200000
    lr = 5e-4
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ..config import ModelConfig

STAGES = ("main", "postfilter", "encoder", "head", "synthesis")


@dataclass
class TrainConfig:
    data: str = "../shared/data/train"
    val_data: str = ""            # a folder; empty: hold out ``val_holdout`` images of ``data``
    val_holdout: int = 8
    out: str = "runs/default"
    stage: str = "main"           # "main" (everything but the post-filter), "postfilter" (only
                                  # it), "encoder" (only the encoder side; the decoder is fixed)
                                  # "head" (only g_s's full-resolution head) or
                                  # "synthesis" (only g_s and its weight generator)
    init: str = ""                # checkpoint or weights to start from (e.g. for stage postfilter)
    init_new_sigma: float = 0.0   # sigma of latent channels added by widening M (0: scale_min)
    init_new_latent: str = "zero"  # those channels: "zero" or "active" (adapix.widen)
    new_rate_from_m: int = 0      # M the model was widened from: its new channels' rate weight
    new_rate_ramp: int = 0        # ... rises from 0 to 1 over these steps (0: off)
    rate_ramp: int = 0            # autoencoder-first curriculum: the weight of the whole rate
    rate_ramp_start: float = 0.0  # term rises from this to 1 over the first rate_ramp steps (0: off)
    steps: int = 200_000
    batch: int = 8
    crop: int = 256
    max_side: int = 512           # training photos are downscaled to this short side
    lr: float = 5e-4
    warmup: int = 300
    decay_steps: int = 20_000     # final cosine decay to lr * lr_floor over this many steps
    lr_floor: float = 0.1
    grad_clip: float = 1.0
    distortion: str = "mse"       # or "ms-ssim"
    t_min: float = 0.0            # quality positions sampled in [t_min, t_max] (see t_power)
    t_max: float = -1.0           # -1: the last anchor
    t_power: float = 1.0          # t = t_min + (t_max - t_min) * u ** t_power; < 1 favours high quality
    t_ramp: int = 0               # lambda curriculum: the range of t widens from t_ramp_center to
    t_ramp_center: float = -1.0   # [t_min, t_max] over the first t_ramp steps (0: off; -1: middle)
    bf16: bool = True
    channels_last: bool = True
    compile: bool = True
    threads: int = 0              # 0: torch default
    seed: int = 1
    log_every: int = 25
    ckpt_minutes: float = 5.0
    val_every: int = 1000
    val_images: int = 4
    val_qualities: tuple[float, ...] = (10.0, 50.0, 90.0)
    device: str = "cpu"
    model_id: str = "adapix-dev"
    export: str = ""              # weights path written at the end (default: <out>/weights.safetensors)

    def t_bounds(self, anchors: int) -> tuple[float, float]:
        """[t_min, t_max] for a model of ``anchors`` lambda anchors (t_max < 0: the last one)."""
        return self.t_min, (anchors - 1 if self.t_max < 0 else self.t_max)


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _coerce(cls_field: dataclasses.Field, value):
    typ = cls_field.type if not isinstance(cls_field.type, str) else cls_field.type
    default = cls_field.default
    if isinstance(default, bool):
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{cls_field.name}: expected a boolean, got {value!r}")
        return bool(value)
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [v for v in value.strip("()[] ").split(",") if v.strip()]
        return tuple(float(v) for v in value)
    del typ
    return str(value)


def _apply(obj, values: dict, section: str):
    fields = {f.name: f for f in dataclasses.fields(obj)}
    changes = {}
    for k, v in values.items():
        if k not in fields:
            raise ValueError(f"unknown setting [{section}] {k} (known: {', '.join(sorted(fields))})")
        changes[k] = _coerce(fields[k], v)
    return dataclasses.replace(obj, **changes)


def load_run_config(path: str | None, overrides: list[str] = ()) -> RunConfig:
    """Reads a TOML file (optional) and ``section.key=value`` overrides into a RunConfig."""
    raw: dict = {}
    if path:
        with open(Path(path), "rb") as f:
            raw = tomllib.load(f)
    unknown = set(raw) - {"model", "train"}
    if unknown:
        raise ValueError(f"unknown config sections: {sorted(unknown)} (use [model] and [train])")
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override must look like section.key=value: {item!r}")
        key, value = item.split("=", 1)
        section, _, name = key.partition(".")
        if not name:
            section, name = "train", section
        raw.setdefault(section, {})[name] = value
    model = _apply(ModelConfig(), raw.get("model", {}), "model")
    train = _apply(TrainConfig(), raw.get("train", {}), "train")
    if train.rate_ramp < 0 or not 0 <= train.rate_ramp_start <= 1:
        raise ValueError(f"train.rate_ramp must be >= 0 and train.rate_ramp_start in [0, 1], got "
                         f"{train.rate_ramp} and {train.rate_ramp_start}")
    if train.t_ramp < 0:
        raise ValueError(f"train.t_ramp must be >= 0, got {train.t_ramp}")
    t_min, t_max = train.t_bounds(len(model.lambdas))
    if train.t_ramp and train.t_ramp_center != -1.0 and not t_min <= train.t_ramp_center <= t_max:
        raise ValueError(f"train.t_ramp_center must be -1 (the middle) or in [t_min, t_max] = "
                         f"[{t_min}, {t_max}], got {train.t_ramp_center}")
    if not 0 < train.t_power <= 4:
        raise ValueError(f"train.t_power must be in (0, 4], got {train.t_power}")
    if train.stage not in STAGES:
        raise ValueError(f"train.stage must be one of {', '.join(STAGES)}, got {train.stage!r}")
    if train.crop <= 0 or train.crop % model.pad_multiple or train.batch < 1:
        # the MSP model splits y (1/16) by 2x2 polyphase and h_a goes to 1/64: a crop that is no
        # multiple of the pad multiple fails in the first forward pass
        raise ValueError(f"train.crop must be a positive multiple of {model.pad_multiple} for "
                         f"this model (model.scales = {model.scales}) and train.batch >= 1, got "
                         f"crop {train.crop}, batch {train.batch}")
    if train.stage == "head" and not model.synthesis_head:
        raise ValueError("train.stage=head trains g_s's full-resolution head: set "
                         "model.synthesis_head to its channels (e.g. 32)")
    if train.init_new_latent not in ("zero", "active"):
        raise ValueError(f"train.init_new_latent must be 'zero' or 'active', got "
                         f"{train.init_new_latent!r}")
    if train.init_new_sigma < 0:
        raise ValueError(f"train.init_new_sigma must be >= 0, got {train.init_new_sigma}")
    if (train.new_rate_ramp > 0) != (train.new_rate_from_m > 0) or train.new_rate_ramp < 0:
        raise ValueError("train.new_rate_ramp and train.new_rate_from_m go together (both > 0)")
    if train.new_rate_from_m and (train.new_rate_from_m >= model.M
                                  or train.new_rate_from_m % model.groups):
        raise ValueError(f"train.new_rate_from_m must be below model.M ({model.M}) and a "
                         f"multiple of model.groups ({model.groups}), got {train.new_rate_from_m}")
    return RunConfig(model=model, train=train)
