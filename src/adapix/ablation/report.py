"""Typed results of an ablation run, their JSON form and a markdown summary.

BD-rate (Bjontegaard, VCEG-M33, 2001) of each variant's (bpp, PSNR) curve against the anchor
variant (MSP with the model stream, by default) with :func:`adapix.eval.bdrate.bd_rate` (akima,
overlap interval only): negative = fewer bits than the anchor at equal PSNR.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..eval.bdrate import bd_rate
from .evaluate import DecodeTiming, RDPoint
from .train import TrainSettings, TrainSummary


@dataclass
class BDRate:
    percent: float | None     # None when not computable (see reason)
    reason: str | None = None
    overlap: float | None = None  # common PSNR range / union of both ranges


@dataclass
class VariantResult:
    name: str
    context: str
    stream: bool
    entropy_parameters: int            # the entropy model of y (model.msp)
    entropy_parameters_effective: int  # masked-out taps of the serial model's context not counted
    total_parameters: int
    train: TrainSummary
    points: list[RDPoint]
    bd_rate: BDRate | None = None      # vs the anchor; None for the anchor itself
    timing: DecodeTiming | None = None


@dataclass
class AblationReport:
    anchor: str
    model_config: dict
    settings: TrainSettings
    train_data: str
    train_images: int
    eval_dir: str
    eval_images: int
    qualities: list[float]
    variants: list[VariantResult] = field(default_factory=list)
    torch_version: str = ""
    created: str = ""


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def compute_bd(anchor: VariantResult, test: VariantResult) -> BDRate:
    r = bd_rate([p.bpp for p in anchor.points], [p.psnr for p in anchor.points],
                [p.bpp for p in test.points], [p.psnr for p in test.points])
    return BDRate(_finite(r.value) if r.ok else None, r.reason, _finite(r.overlap))


def _clean(obj):
    """JSON-safe: non-finite floats become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_json(report: AblationReport, path: Path) -> None:
    path.write_text(json.dumps(_clean(dataclasses.asdict(report)), indent=2) + "\n")


def _num(v: float | None, fmt: str) -> str:
    return "n/a" if v is None or not math.isfinite(v) else format(v, fmt)


def markdown(report: AblationReport) -> str:
    s = report.settings
    cfg = report.model_config
    lines = [
        "# Entropy-model ablation",
        "",
        f"Model N={cfg['N']}, M={cfg['M']}, Nh={cfg['Nh']}, ctx_hidden={cfg['ctx_hidden']}, "
        f"scales={cfg['scales']}, groups={cfg['groups']}; {s.steps} steps, batch {s.batch}, "
        f"crop {s.crop}, lr {s.lr:g}, seed {s.seed}, {'bf16' if s.bf16 else 'fp32'}, "
        f"{s.threads} thread(s); trained on {report.train_images} images of `{report.train_data}`, "
        f"evaluated on {report.eval_images} images of `{report.eval_dir}` at qualities "
        f"{', '.join(f'{q:g}' for q in report.qualities)}.",
        "",
        f"Rates are estimated from the likelihoods with real rounding; BD-rate vs **{report.anchor}** "
        "(negative = fewer bits at equal PSNR). Decode time: h_s + entropy parameters in decode "
        "order + g_s, float networks, median.",
        "",
        "| variant | context | stream | entropy params (effective) | steps | BD-rate | "
        "decode s | entropy s | train s/step | final loss |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for v in report.variants:
        if v.name == report.anchor:
            bd = "anchor"
        elif v.bd_rate is None or v.bd_rate.percent is None:
            bd = "n/a"
            if v.bd_rate is not None and v.bd_rate.reason:
                notes.append(f"- {v.name}: BD-rate n/a: {v.bd_rate.reason}")
        else:
            bd = f"{v.bd_rate.percent:+.2f}%"
        tm = v.timing
        lines.append(
            f"| {v.name} | {v.context} | {'on' if v.stream else 'off'} | "
            f"{v.entropy_parameters:,} ({v.entropy_parameters_effective:,}) | "
            f"{tm.sequential_steps if tm else 'n/a'} | {bd} | "
            f"{_num(tm.decode_s if tm else None, '.3f')} | {_num(tm.entropy_s if tm else None, '.3f')} | "
            f"{_num(v.train.seconds_per_step, '.3f')} | {_num(v.train.final_loss, '.4f')} |")
    if report.variants and report.variants[0].timing:
        tm = report.variants[0].timing
        notes.insert(0, f"- decode times at {tm.width}x{tm.height}, {tm.threads} thread(s), median of {tm.runs}; "
                     "steps = sequential entropy-decoding steps incl. the hyper step")
    lines += ["", *notes, "", "## RD points (means over images)", "",
              "| variant | quality | bpp | bpp y | bpp z | bpp s | PSNR dB |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for v in report.variants:
        for p in v.points:
            lines.append(f"| {v.name} | {p.quality:g} | {p.bpp:.4f} | {p.bpp_y:.4f} | "
                         f"{p.bpp_z:.4f} | {p.bpp_s:.4f} | {p.psnr:.2f} |")
    return "\n".join(lines) + "\n"


__all__ = ["BDRate", "VariantResult", "AblationReport", "compute_bd", "write_json", "markdown"]
