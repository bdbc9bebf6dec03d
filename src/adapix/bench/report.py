"""Decode-time ratios, the markdown table, the JSON report and the environment description."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from ..profiles import split_bf16
from .results import SYNTHESIS, BenchReport, Ratios, SpeedResult


def _base(name: str) -> str:
    """A row's name without the bf16 suffix (a run times one precision)."""
    return split_bf16(name)[0]


def _pick_adapix(rows: list[SpeedResult]) -> SpeedResult | None:
    coded = [r for r in rows if r.name.startswith("adapix:")
             and _base(r.name) != f"adapix:{SYNTHESIS}" and r.decode_s]
    fast = [r for r in coded if _base(r.name) == "adapix:fast"]
    return (fast or coded or [None])[0]


def compute_ratios(results: Sequence[SpeedResult]) -> list[Ratios]:
    """Per size (in order of first appearance): Adapix decode / synthesis-only, and mbt2018
    decode / Adapix decode, with the fast profile's row (else the first Adapix profile)."""
    sizes: list[tuple[int, int]] = []
    for r in results:
        if (r.width, r.height) not in sizes:
            sizes.append((r.width, r.height))
    out = []
    for w, h in sizes:
        rows = [r for r in results if (r.width, r.height) == (w, h)]
        ad = _pick_adapix(rows)
        syn = next((r for r in rows if _base(r.name) == f"adapix:{SYNTHESIS}" and r.decode_s),
                   None)
        mbt = next((r for r in rows if r.name.startswith("mbt2018") and r.decode_s), None)
        out.append(Ratios(
            width=w, height=h, profile=ad.name.split(":", 1)[1] if ad else "",
            adapix_over_synthesis=ad.decode_s / syn.decode_s if ad and syn else None,
            mbt_over_adapix=mbt.decode_s / ad.decode_s if ad and mbt else None))
    return out


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "–" if value is None else format(value, spec) + unit


def _fmt_time(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def _fmt_mb(mb: float | None) -> str:
    return "–" if mb is None else f"{mb:.1f}" if abs(mb) < 10 else f"{mb:.0f}"


def _fmt_mem(r: SpeedResult) -> str:
    if r.encode_mem_mb is None and r.decode_mem_mb is None:
        return "–"
    return f"{_fmt_mb(r.encode_mem_mb)} / {_fmt_mb(r.decode_mem_mb)}"


def format_table(results: Sequence[SpeedResult], skipped: Sequence[str] = ()) -> str:
    """A markdown table of the results, followed by both ratios per size and skip reasons."""
    lines = ["| codec | size | encode | decode | runs | peak MB (enc / dec) | decoder kMAC/px |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.name} | {r.size} | {_fmt_time(r.encode_s)} | {_fmt_time(r.decode_s)} "
                     f"| {r.runs} | {_fmt_mem(r)} | {_fmt(r.kmac_per_pixel, '.1f')} |")
    lines.append("")
    for q in compute_ratios(results):
        who = f"Adapix decode ({q.profile})" if q.profile else "Adapix decode"
        a = _fmt(q.adapix_over_synthesis, ".2f", "x") if q.adapix_over_synthesis else "n/a"
        m = _fmt(q.mbt_over_adapix, ".1f", "x") if q.mbt_over_adapix else "n/a (mbt2018 not run)"
        lines.append(f"- {q.width}x{q.height}: {who} / synthesis only = {a}; "
                     f"mbt2018 decode / {who} = {m}")
    lines += ["", "Times: medians of wall time; encode/decode of Adapix include the .apx "
              "container and pixel conversion. kMAC/px: convolutions and matrix products only "
              "(torch FlopCounterMode, MAC = FLOP/2), per image pixel. Peak MB: peak resident "
              "memory (ru_maxrss/VmHWM) above the baseline after imports and model load, one run "
              "in a fresh process."]
    lines += [f"- skipped: {s}" for s in skipped]
    return "\n".join(lines) + "\n"


def report_to_json(report: BenchReport) -> str:
    return json.dumps(dataclasses.asdict(report), indent=2)


def write_json(report: BenchReport, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_to_json(report) + "\n", encoding="utf-8")
    return path


def environment_info(codec=None) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in f
                                if ln.startswith("model name")), platform.processor())
    except OSError:
        info["cpu"] = platform.processor()
    if hasattr(os, "getloadavg"):
        info["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    if codec is not None:
        info["model_id"] = codec.model_id
        info["weights_hash"] = codec.loaded.weights_hash.hex()
        info["model_config"] = dataclasses.asdict(codec.model.cfg)
    mod = sys.modules.get("compressai")
    if mod is not None:
        info["compressai"] = getattr(mod, "__version__", "?")
    return info
