"""The evaluation runner: codecs x parameters x images -> curves, CSV, plots and a BD-rate table.

:func:`run_eval` encodes and decodes every image of a folder with every parameter of every requested
codec (timed), measures RGB PSNR and MS-SSIM, and writes to ``out_dir``:

* ``<codec>.json``: the curve in the common JSON format (dataset means per parameter),
* ``per_image.csv``: one row per codec, parameter and image,
* ``rd_psnr.png``, ``rd_msssim.png``: RD plots with the measured curves and the reference curves,
* ``bdrate.md``: BD-rates of every measured and reference curve against the anchor,
* ``cache/<codec>.jsonl``: one line per measured (codec, parameter, image). A later run reuses every
  line whose parameter, image name, image content hash and codec fingerprint (at that parameter)
  match, so an interrupted sweep resumes where it stopped and adding images or codecs only
  computes what is new.

Codecs that are unavailable here are skipped with a one-line reason; errors of one codec (e.g. a
crashing encoder) are recorded and do not stop the others. A codec that fails on its first three
jobs without a single success is given up.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import math
import multiprocessing
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .codecs import AdapixOptions, Codec, get_codec, get_codecs
from .metrics import MS_SSIM_MIN_SIZE
from .results import (
    Curve,
    Measurement,
    aggregate,
    append_jsonl,
    load_reference_curves,
    param_key,
    read_jsonl,
    write_curve_json,
    write_per_image_csv,
)

__all__ = ["run_eval", "EvalReport", "list_images", "load_image", "measure", "resolve_anchor",
           "guess_reference_dir", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
GIVE_UP_AFTER = 3  # consecutive failures without any success


@dataclass
class EvalReport:
    out_dir: Path
    images: list[str]
    curves: dict[str, Curve] = field(default_factory=dict)  # measured, by codec name
    references: dict[str, Curve] = field(default_factory=dict)  # by file stem
    skipped: dict[str, str] = field(default_factory=dict)  # codec -> reason
    errors: dict[str, list[str]] = field(default_factory=dict)  # codec -> error messages
    warnings: list[str] = field(default_factory=list)
    computed: int = 0
    cached: int = 0
    anchor: str | None = None
    table: str = ""
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.curves) and not self.errors


# ---------------------------------------------------------------------------------------------- images


def list_images(images_dir: str | Path, limit: int | None = None) -> list[Path]:
    """PNG/JPEG files of a folder (not recursive), sorted by name; the first ``limit`` if given."""
    d = Path(images_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"image folder {d} does not exist")
    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no PNG/JPEG images in {d}")
    if limit is not None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        files = files[:limit]
    return files


def load_image(path: str | Path) -> np.ndarray:
    """An image file as uint8 RGB (alpha dropped, grey expanded; 16-bit images are scaled to 8)."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(img, dtype=np.float64)
            peak = 65535.0 if arr.max() > 255 else 255.0
            g = np.clip(np.rint(arr / peak * 255.0), 0, 255).astype(np.uint8)
            return np.repeat(g[:, :, None], 3, axis=2)
        if img.mode != "RGB":
            img = img.convert("RGB")
        return np.asarray(img, dtype=np.uint8).copy()


def _file_sha(path: Path) -> str:
    h = hashlib.sha1()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------------ measuring


def measure(codec: Codec, rgb: np.ndarray, param: Any, image: str = "") -> Measurement:
    """Encode + decode one image with one parameter (timed) and measure it."""
    from .metrics import ms_ssim, psnr

    t0 = time.perf_counter()
    data = codec.encode(rgb, param)
    t1 = time.perf_counter()
    if not isinstance(data, (bytes, bytearray)) or len(data) == 0:
        raise RuntimeError(f"encoder returned {type(data).__name__} of length {len(data) if data else 0}")
    t1b = time.perf_counter()
    out = codec.decode(bytes(data))
    t2 = time.perf_counter()
    out = np.asarray(out)
    if out.shape != rgb.shape or out.dtype != np.uint8:
        raise RuntimeError(f"decoded image is {out.dtype} {out.shape}, expected uint8 {rgb.shape}")
    h, w = rgb.shape[:2]
    return Measurement(
        codec=codec.name,
        param=param,
        image=image,
        bpp=len(data) * 8.0 / (h * w),
        psnr=psnr(rgb, out),
        ms_ssim=ms_ssim(rgb, out),
        enc_s=t1 - t0,
        dec_s=t2 - t1b,
        width=w,
        height=h,
        nbytes=len(data),
        fingerprint=codec.fingerprint(param),
    )


# Per-process caches (the in-process path and every worker process have their own).
_CODEC_CACHE: dict[tuple[str, AdapixOptions], Codec] = {}
_IMAGE_CACHE: dict[str, np.ndarray] = {}
_IMAGE_CACHE_MAX = 8


def _codec_instance(name: str, adapix_options: AdapixOptions | None = None) -> Codec:
    key = (name, adapix_options if adapix_options is not None else AdapixOptions())
    codec = _CODEC_CACHE.get(key)
    if codec is None:
        codec = get_codec(name, key[1])
        _CODEC_CACHE[key] = codec
    return codec


def _image_array(path: str) -> np.ndarray:
    arr = _IMAGE_CACHE.get(path)
    if arr is None:
        arr = load_image(path)
        if len(_IMAGE_CACHE) >= _IMAGE_CACHE_MAX:
            _IMAGE_CACHE.pop(next(iter(_IMAGE_CACHE)))
        _IMAGE_CACHE[path] = arr
    return arr


def _job(codec_name: str, adapix_options: AdapixOptions | None, param: Any, image_path: str,
         image_name: str, image_sha: str) -> tuple[str, Any]:
    """One job in a worker process (the codec is rebuilt from the registry by name, with the
    options of the run: they travel with the job, not through the environment)."""
    try:
        codec = _codec_instance(codec_name, adapix_options)
    except Exception as exc:  # noqa: BLE001
        return "error", f"cannot create codec {codec_name}: {type(exc).__name__}: {exc}"
    return _codec_job(codec, param, image_path, image_name, image_sha)


def _codec_job(codec: Codec, param: Any, image_path: str, image_name: str, image_sha: str) -> tuple[str, Any]:
    """One job: returns ("ok", measurement dict) or ("error", one-line message); never raises."""
    try:
        m = measure(codec, _image_array(image_path), param, image_name)
        m.image_sha = image_sha
        return "ok", m.to_dict()
    except Exception as exc:  # noqa: BLE001 - any codec failure is reported, not raised
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
        msg = " ".join(str(exc).split()) or type(exc).__name__
        return "error", f"param {param!r}, {image_name}: {type(exc).__name__}: {msg}{where}"


def _init_worker() -> None:
    # one thread per worker (torch, imported later by MS-SSIM, reads these at import time)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")


# ------------------------------------------------------------------------------------------- anchors


def resolve_anchor(anchor: str | None, measured: dict[str, Curve], references: dict[str, Curve]) -> Curve | None:
    """A measured codec name, a reference file stem (``vtm``) or a reference curve name (``VTM``),
    case-insensitive; measured names win. ``None`` picks ``vtm`` if loaded, else the first measured."""
    if anchor is None:
        if "vtm" in references:
            return references["vtm"]
        for pool in (measured, references):
            for c in pool.values():
                return c
        return None
    a = anchor.strip().lower()
    for name, c in measured.items():
        if name.lower() == a:
            return c
    for stem, c in references.items():
        if stem.lower() == a:
            return c
    for c in references.values():
        if c.name.lower() == a:
            return c
    return None


def guess_reference_dir(images_dir: Path) -> Path | None:
    """``<root>/reference/<name>`` for images in ``<root>/data/<name>`` (e.g. shared/data/kodak)."""
    try:
        cand = images_dir.resolve().parent.parent / "reference" / images_dir.resolve().name
    except OSError:
        return None
    return cand if cand.is_dir() and any(cand.glob("*.json")) else None


# ------------------------------------------------------------------------------------------------ run


def run_eval(
    images_dir: str | Path,
    codec_names: str | Sequence[str] | None = None,
    out_dir: str | Path = "results/eval",
    workers: int = 1,
    reference_dir: str | Path | None = None,
    anchor: str | None = None,
    limit_images: int | None = None,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
    adapix_options: AdapixOptions | None = None,
) -> EvalReport:
    """Run the benchmark; see the module docstring for the outputs.

    ``codec_names``: list or comma-separated names, ``None``/``"all"`` = every registered codec.
    ``workers``: processes (1 = in this process). ``reference_dir``: folder of published JSON curves
    (``None`` = none). ``anchor``: measured codec or reference name for ``bdrate.md`` (``None`` =
    ``vtm`` if present, else the first measured codec). ``adapix_options``: weights and qualities
    of the Adapix codecs (``None``: the shipped model, the default qualities). Raises
    ``ValueError``/``FileNotFoundError`` for bad arguments before any work is done.
    """
    if workers < 1:
        raise ValueError("workers must be >= 1")
    images_dir = Path(images_dir)
    out_dir = Path(out_dir)
    codecs = get_codecs(codec_names, adapix_options)
    image_paths = list_images(images_dir, limit_images)
    if reference_dir is not None and not Path(reference_dir).is_dir():
        raise FileNotFoundError(f"reference folder {reference_dir} does not exist")
    references, ref_warn = load_reference_curves(reference_dir) if reference_dir is not None else ({}, [])
    if anchor is not None:
        probe = {c.name: Curve(c.name) for c in codecs}
        if resolve_anchor(anchor, probe, references) is None:
            known = [c.name for c in codecs] + sorted(references)
            raise ValueError(f"anchor {anchor!r} is neither a requested codec nor a reference curve "
                             f"(choose from: {', '.join(known)})")

    report = EvalReport(out_dir=out_dir, images=[p.name for p in image_paths], references=references)
    report.warnings.extend(ref_warn)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = out_dir / "cache"
    cache_dir.mkdir(exist_ok=True)

    shas = {p.name: _file_sha(p) for p in image_paths}
    path_of = {p.name: str(p) for p in image_paths}

    # ---- availability and cache lookup
    active: list[Codec] = []
    have: dict[str, dict[tuple[str, str], Measurement]] = {}
    jobs: list[tuple[str, Any, str]] = []  # (codec, param, image)
    for codec in codecs:
        try:
            reason = codec.available()
        except Exception as exc:  # noqa: BLE001
            reason = f"availability check failed: {type(exc).__name__}: {exc}"
        if reason:
            report.skipped[codec.name] = reason
            log(f"skip {codec.name}: {reason}")
            continue
        try:
            params = list(codec.params())
            fps = {param_key(p): codec.fingerprint(p) for p in params}
        except Exception as exc:  # noqa: BLE001
            report.errors.setdefault(codec.name, []).append(f"{type(exc).__name__}: {exc}")
            log(f"error {codec.name}: {type(exc).__name__}: {exc}")
            continue
        active.append(codec)
        cached: dict[tuple[str, str], Measurement] = {}
        for rec in read_jsonl(cache_dir / f"{codec.name}.jsonl"):
            try:
                m = Measurement.from_dict(rec)
            except (TypeError, ValueError):
                continue
            if (m.codec != codec.name or m.fingerprint != fps.get(param_key(m.param))
                    or shas.get(m.image) != m.image_sha):
                continue
            cached[(param_key(m.param), m.image)] = m
        have[codec.name] = cached
        for param in params:
            for name in report.images:
                if (param_key(param), name) in cached:
                    report.cached += 1
                else:
                    jobs.append((codec.name, param, name))

    # ---- run the missing jobs
    if jobs:
        n_codecs = len({j[0] for j in jobs})
        log(f"{len(jobs)} encode/decode jobs ({n_codecs} codec(s), {len(report.images)} image(s)), "
            f"{report.cached} cached, {workers} worker(s)")
        instances = {c.name: c for c in active}
        _run_jobs(jobs, instances, have, shas, path_of, cache_dir, workers, progress, report, log,
                  adapix_options)
    elif active:
        log(f"all {report.cached} results served from the cache ({cache_dir})")

    # ---- curves
    for codec in active:
        measurements = list(have[codec.name].values())
        curve, warn = aggregate(measurements, codec.name, codec.description, params=codec.params(),
                                images=report.images)
        for w in warn:
            report.warnings.append(w)
        if len(curve) == 0:
            if codec.name not in report.errors:
                report.errors.setdefault(codec.name, []).append("no complete point")
            continue
        report.curves[codec.name] = curve
        report.files[f"{codec.name}.json"] = write_curve_json(curve, out_dir / f"{codec.name}.json")

    all_rows = [m for c in active for m in have[c.name].values()
                if m.image in shas and param_key(m.param) in {param_key(p) for p in c.params()}]
    report.files["per_image.csv"] = write_per_image_csv(all_rows, out_dir / "per_image.csv")

    # ---- plots
    from .plots import plot_msssim, plot_psnr

    dataset = images_dir.name
    plot_curves = list(report.curves.values()) + list(references.values())
    n = len(report.images)
    for fname, fn, what in (("rd_psnr.png", plot_psnr, "RGB PSNR"), ("rd_msssim.png", plot_msssim, "MS-SSIM")):
        try:
            p = fn(plot_curves, out_dir / fname, title=f"{dataset} ({n} image{'s' if n != 1 else ''}): {what}")
        except Exception as exc:  # noqa: BLE001 - a plotting problem must not lose the results
            report.warnings.append(f"{fname} not written: {type(exc).__name__}: {exc}")
            continue
        if p is not None:
            report.files[fname] = p
        else:
            why = ""
            small = [] if what != "MS-SSIM" else sorted(
                {m.image for m in all_rows if m.ms_ssim is None or not math.isfinite(m.ms_ssim)})
            if small:
                why = (f" (MS-SSIM needs at least {MS_SSIM_MIN_SIZE} px a side, and a curve's mean"
                       f" over the images is undefined with any smaller one: {len(small)} of {n},"
                       f" e.g. {small[0]})")
            report.warnings.append(f"{fname} not written: no curve with finite {what} values{why}")

    # ---- BD-rate table
    from .bdrate import bd_table

    anchor_curve = resolve_anchor(anchor, report.curves, references)
    notes = []
    if anchor is not None and anchor_curve is None:
        report.warnings.append(f"anchor {anchor!r} has no curve (skipped or failed); using the default anchor")
        anchor_curve = resolve_anchor(None, report.curves, references)
    if anchor_curve is not None:
        report.anchor = anchor_curve.label
        notes.append(f"Measured curves: {n} image(s) of `{images_dir}`.")
        if references:
            notes.append(
                f"Reference curves (`{reference_dir}`) are published means over their whole dataset: BD-rates "
                "between measured and reference curves are only meaningful when all images were measured."
            )
        skipped = [f"{k} ({v})" for k, v in report.skipped.items()]
        if skipped:
            notes.append("Skipped: " + "; ".join(skipped) + ".")
        if report.errors:
            notes.append("Codecs with errors: " + ", ".join(sorted(report.errors)) + " (see the run log).")
        report.table = bd_table(plot_curves, anchor_curve, title=f"BD-rates on {dataset}, anchor {anchor_curve.label}",
                                notes=notes)
        path = out_dir / "bdrate.md"
        path.write_text(report.table, encoding="utf-8")
        report.files["bdrate.md"] = path
    else:
        report.warnings.append("bdrate.md not written: no curve to use as anchor")

    for w in report.warnings:
        log(f"warning: {w}")
    for name, errs in report.errors.items():
        log(f"error {name}: {len(errs)} failure(s); first: {errs[0]}")
    return report


def _run_jobs(
    jobs: list[tuple[str, Any, str]],
    instances: dict[str, Codec],
    have: dict[str, dict[tuple[str, str], Measurement]],
    shas: dict[str, str],
    path_of: dict[str, str],
    cache_dir: Path,
    workers: int,
    progress: bool,
    report: EvalReport,
    log: Callable[[str], None],
    adapix_options: AdapixOptions | None = None,
) -> None:
    from tqdm import tqdm

    fails: dict[str, int] = {}
    oks: dict[str, int] = {}
    dead: set[str] = set()

    def handle(codec_name: str, status: str, payload: Any) -> None:
        if status == "ok":
            m = Measurement.from_dict(payload)
            have[codec_name][(param_key(m.param), m.image)] = m
            append_jsonl(cache_dir / f"{codec_name}.jsonl", [payload])
            oks[codec_name] = oks.get(codec_name, 0) + 1
            report.computed += 1
        else:
            report.errors.setdefault(codec_name, []).append(payload)
            fails[codec_name] = fails.get(codec_name, 0) + 1
            if fails[codec_name] >= GIVE_UP_AFTER and not oks.get(codec_name) and codec_name not in dead:
                dead.add(codec_name)
                log(f"\ngiving up {codec_name} after {GIVE_UP_AFTER} failures: {payload}")

    bar = tqdm(total=len(jobs), desc="eval", unit="job", disable=not progress, file=sys.stderr,
               dynamic_ncols=True, leave=True)
    try:
        if workers == 1:
            for codec_name, param, image in jobs:
                if codec_name in dead:
                    bar.update(1)
                    continue
                bar.set_postfix_str(f"{codec_name} {param!r} {image}", refresh=False)
                status, payload = _codec_job(instances[codec_name], param, path_of[image], image, shas[image])
                handle(codec_name, status, payload)
                bar.update(1)
            return
        ctx = multiprocessing.get_context("spawn")  # no fork after torch/threads were initialised
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker) as pool:
            futures: dict[cf.Future, str] = {}
            try:
                for codec_name, param, image in jobs:
                    fut = pool.submit(_job, codec_name, adapix_options, param, path_of[image], image,
                                      shas[image])
                    futures[fut] = codec_name
                pending = set(futures)
                while pending:
                    done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                    for fut in done:
                        codec_name = futures[fut]
                        bar.update(1)
                        if fut.cancelled():
                            continue
                        try:
                            status, payload = fut.result()
                        except Exception as exc:  # noqa: BLE001 - e.g. a worker killed by a crash
                            status, payload = "error", f"worker failed: {type(exc).__name__}: {exc}"
                        handle(codec_name, status, payload)
                        bar.set_postfix_str(codec_name, refresh=False)
                    if dead:
                        for fut in list(pending):
                            if futures[fut] in dead and fut.cancel():
                                pending.discard(fut)
                                bar.update(1)
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    finally:
        bar.close()
