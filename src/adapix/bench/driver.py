"""The whole benchmark: :func:`run_bench` schedules and runs every measurement of a config."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .mbt import bench_mbt2018, build_mbt2018, compressai_unavailable_reason
from .memory import measure_peak_memory, memory_available
from .pictures import make_picture
from .report import compute_ratios, environment_info
from .results import SYNTHESIS, BenchConfig, BenchReport
from .timing import bench_adapix, bench_synthesis, torch_threads


@dataclass
class _Task:
    label: str
    run: Callable[[], None]


def run_bench(cfg: BenchConfig, progress: bool = True, codec=None,
              log: Callable[[str], None] | None = None) -> BenchReport:
    """Runs every measurement of ``cfg`` (a tqdm bar over them when ``progress``) and returns the
    report. ``codec`` (optional) is used instead of loading ``cfg.model``; the peak-memory
    subprocesses still load ``cfg.model``, so pass its weights file there too. Failures of a
    single measurement are recorded in ``report.skipped`` and do not stop the others."""
    from tqdm import tqdm

    from ..codec import Codec
    from ..profiles import PROFILES, get_profile

    profiles = tuple(cfg.profiles) if cfg.profiles else tuple(PROFILES)
    for p in profiles:
        get_profile(p)  # AdapixError for an unknown name, before any work
    own_codec = codec is None
    if own_codec:
        codec = Codec(cfg.model)
    report = BenchReport(config=dataclasses.asdict(cfg), environment={})
    report.config["profiles"] = list(profiles)
    mem_reason = memory_available() if cfg.memory else None
    if cfg.memory and mem_reason is None and cfg.model is None and not own_codec:
        mem_reason = ("peak memory not measured: run_bench was given a Codec but not its weights "
                      "file (cfg.model), which the memory subprocesses load")
    if mem_reason:
        report.skipped.append(mem_reason)
    mbt_reason = None
    if cfg.mbt:
        mbt_reason = compressai_unavailable_reason()
        if mbt_reason:
            report.skipped.append(f"mbt2018: {mbt_reason}")
    do_mem = cfg.memory and mem_reason is None
    do_mbt = cfg.mbt and mbt_reason is None
    base_spec = {"threads": cfg.threads, "model": cfg.model, "image": cfg.image, "seed": cfg.seed,
                 "quality": cfg.quality, "time_budget": cfg.time_budget,
                 "mbt_quality": cfg.mbt_quality, "bf16": cfg.bf16}
    pictures: dict[tuple[int, int], np.ndarray] = {}
    state: dict = {}
    tasks: list[_Task] = []

    def picture(w: int, h: int) -> np.ndarray:
        if (w, h) not in pictures:
            pictures[(w, h)] = make_picture(w, h, cfg.image, cfg.seed)
        return pictures[(w, h)]

    def guarded(label: str, fn: Callable[[], None]) -> Callable[[], None]:
        def run():
            try:
                fn()
            except Exception as exc:  # noqa: BLE001  (one failing measurement is reported)
                msg = f"{label}: {type(exc).__name__}: {exc}".splitlines()[0]
                report.skipped.append(msg)
                if log:
                    log(f"warning: {msg}")
        return run

    def add(label: str, fn: Callable[[], None]) -> None:
        tasks.append(_Task(label, guarded(label, fn)))

    def mem(key: tuple, which: str, spec: dict) -> Callable[[], None]:
        def run():
            row = state.get(key)
            if row is None:
                raise RuntimeError("its timing run failed")
            extra = {}
            if spec["kind"] == "adapix-decode":
                extra["data"] = state[key + ("data",)]
            elif spec["kind"] == "mbt2018-decode":
                out = state[key + ("data",)]
                extra = {"strings": out["strings"], "shape": out["shape"]}
            value = measure_peak_memory({**base_spec, **spec, **extra})
            setattr(row, which, value)
            row.peak_mem_mb = max(v for v in (row.encode_mem_mb, row.decode_mem_mb)
                                  if v is not None)
        return run

    for w, h in cfg.sizes:
        size = f"{w}x{h}"
        geo = {"width": w, "height": h}
        for prof in profiles:
            key = ("adapix", prof, w, h)

            def timing(key=key, prof=prof, w=w, h=h):
                row, data = bench_adapix(codec, picture(w, h), prof, cfg.runs, cfg.quality,
                                         cfg.time_budget, cfg.complexity, cfg.bf16)
                state[key], state[key + ("data",)] = row, data
                report.results.append(row)
            add(f"adapix:{prof} {size}", timing)
            if do_mem:
                add(f"adapix:{prof} {size} encode memory",
                    mem(key, "encode_mem_mb", {"kind": "adapix-encode", "profile": prof, **geo}))
                add(f"adapix:{prof} {size} decode memory",
                    mem(key, "decode_mem_mb", {"kind": "adapix-decode", **geo}))
        key = ("synthesis", w, h)

        def synth(key=key, w=w, h=h):
            row = bench_synthesis(codec.model, w, h, cfg.runs, cfg.seed, cfg.complexity,
                                  cfg.bf16)
            state[key] = row
            report.results.append(row)
        add(f"adapix:{SYNTHESIS} {size}", synth)
        if do_mem:
            add(f"adapix:{SYNTHESIS} {size} memory",
                mem(key, "decode_mem_mb", {"kind": "adapix-synthesis", **geo}))
        if do_mbt:
            key = ("mbt", w, h)

            def mbt(key=key, w=w, h=h):
                if "mbt_net" not in state:
                    state["mbt_net"] = build_mbt2018(cfg.mbt_quality, cfg.seed)
                row, out = bench_mbt2018(picture(w, h), cfg.mbt_runs or cfg.runs,
                                         cfg.mbt_quality, cfg.seed, cfg.complexity,
                                         net=state["mbt_net"])
                state[key], state[key + ("data",)] = row, out
                report.results.append(row)
            add(f"mbt2018:q{cfg.mbt_quality} {size}", mbt)
            if do_mem:
                add(f"mbt2018 {size} encode memory",
                    mem(key, "encode_mem_mb", {"kind": "mbt2018-encode", **geo}))
                add(f"mbt2018 {size} decode memory",
                    mem(key, "decode_mem_mb", {"kind": "mbt2018-decode", **geo}))

    with torch_threads(cfg.threads):
        report.environment = environment_info(codec)
        report.environment["threads"] = torch.get_num_threads()
        bar = tqdm(tasks, desc="bench", unit="step", disable=not progress, leave=False,
                   dynamic_ncols=True)
        for task in bar:
            bar.set_postfix_str(task.label, refresh=True)
            task.run()
        bar.close()
    report.ratios = compute_ratios(report.results)
    return report
