"""Large images: peak memory and time of encoding and decoding, file to file, against image size.

``adapix bench --large`` (or :func:`run_large`) measures, for every size and tile setting:

* the picture: a photo (``--image``) mirror-tiled to the size without resampling (else the
  synthetic photo of 1024x1024, mirror-tiled), written as a PNG to the work directory;
* encode, in a fresh ``python -c`` process with ``threads`` torch threads: load the PNG
  (:func:`adapix.images.load_image`), :meth:`Codec.encode_ex`, write the ``.apx``;
* decode, in another fresh process: read the ``.apx``, :meth:`Codec.decode_ex`, write a PNG
  (:func:`adapix.images.save_image`).

Each child resets its memory high-water mark after imports and model load (where Linux allows it),
runs the steps once, and reports its peak resident memory (VmHWM, the same counter as the other
benchmark rows, see :func:`adapix.bench.memory._maxrss_mb`) both as an absolute value and above
that baseline, with the time of the coding step and of the PNG input/output separately. One run
per configuration: at 10000x10000 a single encode takes many minutes at one thread.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import pickle
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .memory import _maxrss_mb, _reset_high_water_mark
from .results import _RESULT_TAG

DEFAULT_LARGE_SIZES: tuple[tuple[int, int], ...] = ((1024, 1024), (2048, 2048), (4096, 4096))


@dataclass
class LargeResult:
    """One size and tile setting. Seconds; MB = 2**20 bytes; peak = VmHWM of the whole process,
    ``*_above_base_mb`` = peak minus the RSS after imports and model load."""

    width: int
    height: int
    tile_request: str          # "auto", "0" (never) or the tile size asked for
    tile_size: int             # what the encoder used (0: not tiled)
    tiles: int
    bytes: int
    bpp: float
    psnr: float
    encode_s: float            # Codec.encode_ex on the loaded pixels
    load_s: float              # PNG -> pixels
    decode_s: float            # Codec.decode_ex
    save_s: float              # pixels -> PNG
    encode_peak_mb: float
    decode_peak_mb: float
    encode_above_base_mb: float
    decode_above_base_mb: float
    base_mb: float             # RSS after imports and model load (encode process)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass
class LargeReport:
    config: dict
    environment: dict
    results: list[LargeResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def write_large_picture(path: str | os.PathLike, width: int, height: int,
                        image: str | None = None, seed: int = 0) -> Path:
    """The test picture of ``width`` x ``height`` as a PNG at ``path`` (reused if it exists with
    that size): ``image`` mirror-tiled, or the 1024x1024 synthetic photo mirror-tiled."""
    import numpy as np
    from PIL import Image

    from .pictures import synthetic_photo

    path = Path(path)
    if path.is_file():
        try:
            with Image.open(path) as im:
                if im.size == (width, height):
                    return path
        except Exception:  # noqa: BLE001  (rewritten below)
            pass
    if image:
        from ..images import load_image

        src = load_image(str(image)).pixels
        if src.shape[2] == 1:
            src = np.repeat(src, 3, axis=2)
    else:
        src = synthetic_photo(min(width, 1024), min(height, 1024), seed)
    reps = (-(-height // src.shape[0]), -(-width // src.shape[1]))
    rows = [src if i % 2 == 0 else src[::-1] for i in range(reps[0])]
    col = np.concatenate(rows, axis=0)[:height]
    del rows
    cols = [col if j % 2 == 0 else col[:, ::-1] for j in range(reps[1])]
    px = np.ascontiguousarray(np.concatenate(cols, axis=1)[:, :width])
    del cols, col
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(px, "RGB").save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, path)
    return path


def _child(spec: dict) -> dict:
    """Runs in a fresh interpreter: one encode (PNG -> .apx) or decode (.apx -> PNG)."""
    import torch

    torch.set_num_threads(spec["threads"])
    from ..codec import Codec
    from ..images import load_image, save_image

    codec = Codec(spec["model"], max_pixels=spec["max_pixels"])
    gc.collect()
    reset = _reset_high_water_mark()
    base = _maxrss_mb()
    out: dict = {"base_mb": base, "hwm_reset": reset}
    if spec["kind"] == "encode":
        t0 = time.perf_counter()
        img = load_image(spec["src"], max_pixels=spec["max_pixels"])
        t1 = time.perf_counter()
        res = codec.encode_ex(img, quality=spec["quality"], profile=spec["profile"],
                              tile_size=spec["tile_size"])
        t2 = time.perf_counter()
        Path(spec["dst"]).write_bytes(res.data)
        out.update(load_s=t1 - t0, encode_s=t2 - t1, bytes=len(res.data), bpp=res.bpp,
                   psnr=res.psnr, tile_size=res.tile_size)
    else:
        data = Path(spec["src"]).read_bytes()
        t0 = time.perf_counter()
        res = codec.decode_ex(data)
        t1 = time.perf_counter()
        save_image(res.image, spec["dst"])  # Pillow's default PNG settings, as `adapix decode`
        t2 = time.perf_counter()
        out.update(decode_s=t1 - t0, save_s=t2 - t1)
    out["peak_mb"] = _maxrss_mb()
    return out


def _child_main() -> None:
    spec = pickle.loads(sys.stdin.buffer.read())
    result = _child(spec)
    sys.stdout.write("\n" + _RESULT_TAG + json.dumps(result) + "\n")
    sys.stdout.flush()


def _run_child(spec: dict, timeout: float) -> dict:
    code = "from adapix.bench.large import _child_main; _child_main()"
    proc = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(spec),
                          capture_output=True, timeout=timeout)
    out = proc.stdout.decode("utf-8", "replace")
    for line in reversed(out.splitlines()):
        if line.startswith(_RESULT_TAG):
            return json.loads(line[len(_RESULT_TAG):])
    err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    raise RuntimeError(f"{spec['kind']} subprocess failed with exit status {proc.returncode}: "
                       f"{err[-1] if err else 'no output'}")


def run_large(sizes: Sequence[tuple[int, int]] = DEFAULT_LARGE_SIZES,
              tile_sizes: Sequence[int | None] = (None,), *, threads: int = 1,
              model: str | None = None, image: str | None = None, quality: float = 50.0,
              profile: str = "fast", workdir: str | os.PathLike | None = None, seed: int = 0,
              keep: bool = False, timeout: float = 6 * 3600.0,
              log: Callable[[str], None] | None = None) -> LargeReport:
    """Measures every (size, tile setting); ``tile_sizes`` entries: None (automatic), 0 (never
    tile) or a tile size. Pictures go to ``workdir`` (default: a new temporary directory) and are
    reused between tile settings; coded and decoded files are deleted unless ``keep``. A failing
    configuration is recorded in ``skipped`` and does not stop the others."""
    import tempfile

    from ..codec import Codec
    from ..container import DEFAULT_MAX_PIXELS
    from ..profiles import get_profile
    from ..tiling import choose_tile_size
    from .report import environment_info

    get_profile(profile)  # AdapixError for an unknown name, before any work
    for t in tile_sizes:
        if t is not None:
            choose_tile_size(1, 1, t)  # AdapixError for an invalid size
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="adapix-large-"))
    work.mkdir(parents=True, exist_ok=True)
    codec = Codec(model)
    env = environment_info(codec)
    env["threads"] = threads
    del codec
    report = LargeReport(config={"sizes": [list(s) for s in sizes],
                                 "tile_sizes": ["auto" if t is None else t for t in tile_sizes],
                                 "threads": threads, "model": model, "image": image,
                                 "quality": quality, "profile": profile, "seed": seed,
                                 "workdir": str(work)},
                         environment=env)
    say = log or (lambda m: None)
    max_pixels = max([w * h for w, h in sizes] + [DEFAULT_MAX_PIXELS])
    for w, h in sizes:
        pic = work / f"picture-{w}x{h}.png"
        try:
            say(f"{w}x{h}: writing the test picture {pic}")
            write_large_picture(pic, w, h, image, seed)
        except Exception as exc:  # noqa: BLE001
            report.skipped.append(f"{w}x{h}: picture: {type(exc).__name__}: {exc}".splitlines()[0])
            continue
        for t in tile_sizes:
            req = "auto" if t is None else str(t)
            apx, back = work / f"coded-{w}x{h}-t{req}.apx", work / f"decoded-{w}x{h}-t{req}.png"
            common = {"threads": threads, "model": model, "max_pixels": max_pixels}
            try:
                say(f"{w}x{h} tile {req}: encoding")
                enc = _run_child({**common, "kind": "encode", "src": str(pic), "dst": str(apx),
                                  "quality": quality, "profile": profile, "tile_size": t},
                                 timeout)
                say(f"{w}x{h} tile {req}: encoded in {enc['encode_s']:.1f} s, peak "
                    f"{enc['peak_mb']:.0f} MB; decoding")
                dec = _run_child({**common, "kind": "decode", "src": str(apx), "dst": str(back)},
                                 timeout)
            except Exception as exc:  # noqa: BLE001
                report.skipped.append(f"{w}x{h} tile {req}: {type(exc).__name__}: "
                                      f"{exc}".splitlines()[0])
                continue
            finally:
                if not keep:
                    for p in (apx, back):
                        if p.exists():
                            p.unlink()
            ts = enc["tile_size"]
            report.results.append(LargeResult(
                width=w, height=h, tile_request=req, tile_size=ts,
                tiles=(-(-h // ts)) * (-(-w // ts)) if ts else 1, bytes=enc["bytes"],
                bpp=enc["bpp"], psnr=enc["psnr"], encode_s=enc["encode_s"], load_s=enc["load_s"],
                decode_s=dec["decode_s"], save_s=dec["save_s"], encode_peak_mb=enc["peak_mb"],
                decode_peak_mb=dec["peak_mb"],
                encode_above_base_mb=enc["peak_mb"] - enc["base_mb"],
                decode_above_base_mb=dec["peak_mb"] - dec["base_mb"], base_mb=enc["base_mb"]))
            say(f"{w}x{h} tile {req}: decoded in {dec['decode_s']:.1f} s, peak "
                f"{dec['peak_mb']:.0f} MB")
        if not keep and pic.exists():
            pic.unlink()
    return report


def format_large_table(results: Sequence[LargeResult], skipped: Sequence[str] = ()) -> str:
    lines = ["| size | pixels | tiling | encode | decode | peak RSS encode | peak RSS decode "
             "| above baseline (enc / dec) | bpp | PSNR |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        tiling = f"{r.tiles} tiles of {r.tile_size}" if r.tile_size else "not tiled"
        if r.tile_request == "auto":
            tiling += " (auto)"
        lines.append(
            f"| {r.size} | {r.width * r.height / 1e6:.1f} MP | {tiling} "
            f"| {r.encode_s:.1f} s (+{r.load_s:.1f} s PNG) | {r.decode_s:.1f} s "
            f"(+{r.save_s:.1f} s PNG) | {r.encode_peak_mb:,.0f} MB | {r.decode_peak_mb:,.0f} MB "
            f"| {r.encode_above_base_mb:,.0f} / {r.decode_above_base_mb:,.0f} MB "
            f"| {r.bpp:.3f} | {r.psnr:.2f} |")
    lines += ["", "encode: Codec.encode_ex on the loaded pixels (+ reading the PNG); decode: "
              "Codec.decode_ex (+ writing the PNG). Peak RSS: VmHWM of the whole process (Python, "
              "torch, the model and the image), one run each in a fresh process; above baseline: "
              "minus the RSS after imports and model load."]
    lines += [f"- skipped: {s}" for s in skipped]
    return "\n".join(lines) + "\n"


def large_report_to_json(report: LargeReport) -> str:
    d = dataclasses.asdict(report)
    return json.dumps(d, indent=2)


__all__ = ["LargeResult", "LargeReport", "DEFAULT_LARGE_SIZES", "run_large",
           "write_large_picture", "format_large_table", "large_report_to_json"]
