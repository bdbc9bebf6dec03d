"""Speed, memory and decoder complexity of Adapix, with a serial autoregressive model for contrast.

What is measured (``run_bench``; CLI: ``adapix bench``), per image size:

* ``adapix:<profile>``: wall time of :meth:`adapix.codec.Codec.encode_ex` and
  :meth:`~adapix.codec.Codec.decode_ex` (image array -> ``.apx`` bytes -> image array, so container
  packing and colour conversion are included), median of ``runs`` runs after one warm-up run, in
  this process with ``torch.set_num_threads(threads)``.
* ``adapix:synthesis``: the synthesis transform alone (:meth:`AdapixModel.synthesize`: weight
  generator + inverse gain + ``g_s``) on a ``y_hat`` of the same latent size: the floor that a
  parallel entropy model can approach. Its "decode" column is that time; it has no encode.
* ``mbt2018:q<Q>``: CompressAI's ``mbt2018`` (joint autoregressive + hyperprior, Minnen et al.,
  NeurIPS 2018) with *random* weights at zoo quality Q (default 6: N=192, M=320), after
  ``update(force=True)``; ``compress(x)`` and ``decompress(strings, shape)`` on the same image
  padded to a multiple of 64 (the latent then has the size of Adapix's). Its decoder runs the
  serial raster-scan loop over every latent position, so its time, unlike its bit rate, does not
  depend on training. Skipped with a one-line reason when compressai cannot be imported.
* peak memory (``peak_mem_mb``; ``encode_mem_mb`` / ``decode_mem_mb``): each configuration is run
  once more in a fresh ``python -c`` subprocess (same thread count); after imports, model load and
  input preparation the process's high-water mark is reset where Linux allows it
  (``/proc/self/clear_refs``) and read as the baseline, the operation runs once, and the
  high-water mark minus the baseline is reported in MB (1 MB = 2**20 bytes). The high-water
  mark is ``getrusage(RUSAGE_SELF).ru_maxrss``, read on Linux as ``VmHWM`` (the same counter
  without the parent's peak that ru_maxrss inherits at exec; see :func:`_maxrss_mb`).
* decoder complexity (``kmac_per_pixel``): ``torch.utils.flop_counter.FlopCounterMode`` over one
  full decode (the synthesis call alone for the synthesis row). It counts only convolutions
  (incl. transposed and grouped) and matrix products (mm/addmm/bmm/baddbmm; linear layers),
  not element-wise work (GDN's square root and division, activations, rounding) nor the entropy
  coder; MACs = FLOPs / 2, divided by the pixels of the image (not of its padded size).

Ratios (``compute_ratios``): Adapix decode / synthesis-only decode (how far the entropy decoding
is from the parallel floor) and mbt2018 decode / Adapix decode (fast profile, or the first
profile measured), per size.

compressai is installed WITHOUT its dependencies (``pip install --no-deps compressai==1.2.8``):
its declared requirements include torchvision and torch-geometric, which would pull another
torch build. Its small import-time needs are the ``bench`` extra (``pip install -e '.[bench]'``).
The packages it imports for features the benchmark does not use (torchvision, torch_geometric,
pandas, requests) are replaced by stub modules while compressai is imported: see
:func:`import_compressai`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import importlib.util
import json
import math
import os
import pickle
import platform
import statistics
import subprocess
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((768, 512), (1920, 1080))
DEFAULT_RUNS = 5
DEFAULT_THREADS = 2
DEFAULT_MBT_QUALITY = 6
MBT_PAD = 64  # mbt2018 needs multiples of 64 (two stride-2 stages after four in g_a)
COMPRESSAI_VERSION = "1.2.8"
COMPRESSAI_INSTALL = f"pip install --no-deps compressai=={COMPRESSAI_VERSION}"
SYNTHESIS = "synthesis"
_RESULT_TAG = "ADAPIX_BENCH_RESULT "


# ---- results -----------------------------------------------------------------------------------

@dataclass
class SpeedResult:
    """One measured configuration. Times in seconds (medians), memory in MB (2**20 bytes).

    ``encode_s`` is None for the synthesis-only row; ``peak_mem_mb`` is the larger of
    ``encode_mem_mb`` and ``decode_mem_mb``; None where not measured."""

    name: str                    # "adapix:<profile>", "adapix:synthesis", "mbt2018:q6"
    width: int
    height: int
    encode_s: float | None
    decode_s: float | None
    runs: int
    peak_mem_mb: float | None = None
    kmac_per_pixel: float | None = None
    encode_mem_mb: float | None = None
    decode_mem_mb: float | None = None
    bytes: int | None = None     # size of the coded image (random-weight models: not meaningful)
    note: str = ""

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass
class Ratios:
    """Decode-time ratios at one size (None where a side was not measured)."""

    width: int
    height: int
    profile: str                                  # the Adapix row used
    adapix_over_synthesis: float | None           # Adapix decode / synthesis-only
    mbt_over_adapix: float | None                 # mbt2018 decode / Adapix decode


@dataclass
class BenchConfig:
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
    runs: int = DEFAULT_RUNS
    threads: int = DEFAULT_THREADS
    profiles: tuple[str, ...] | None = ("fast",)  # None: every registered profile
    model: str | None = None                     # weights file; None: the shipped model
    image: str | None = None                     # test picture (tiled/cropped); None: synthetic
    quality: float = 50.0
    time_budget: float | None = None             # for profiles with online optimisation
    mbt: bool = True
    mbt_quality: int = DEFAULT_MBT_QUALITY
    mbt_runs: int | None = None                  # timed runs of mbt2018; None: ``runs``
    memory: bool = True
    complexity: bool = True
    seed: int = 0


@dataclass
class BenchReport:
    config: dict
    environment: dict
    results: list[SpeedResult] = field(default_factory=list)
    ratios: list[Ratios] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


# ---- arguments ---------------------------------------------------------------------------------

def parse_size(text: str) -> tuple[int, int]:
    """``"768x512"`` -> (768, 512) (width, height); ValueError with a one-line message."""
    parts = text.strip().lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"bad size {text!r} (expected WIDTHxHEIGHT, e.g. 768x512)")
    w, h = int(parts[0]), int(parts[1])
    if not (1 <= w <= 16384 and 1 <= h <= 16384):
        raise ValueError(f"bad size {text!r} (width and height must be in 1..16384)")
    return w, h


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    items = [t for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError("no sizes given (expected e.g. 768x512,1920x1080)")
    return tuple(dict.fromkeys(parse_size(t) for t in items))  # in order, without repeats


# ---- test pictures -----------------------------------------------------------------------------

def _value_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Smooth random field in about [-1, 1]: a random grid, bicubically upsampled."""
    from PIL import Image

    gh, gw = max(2, int(math.ceil(height / cell)) + 1), max(2, int(math.ceil(width / cell)) + 1)
    grid = rng.uniform(-1.0, 1.0, (gh, gw)).astype(np.float32)
    im = Image.fromarray(grid).resize((width, height), Image.BICUBIC)
    return np.asarray(im, dtype=np.float32)


def synthetic_photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A deterministic photo-like picture, (height, width, 3) uint8: a shaded background, soft-edged
    shaded ellipses and rectangles, fractal texture of varying strength, and sensor-like noise.
    The same (width, height, seed) always gives the same pixels."""
    rng = np.random.default_rng(seed)
    s = float(max(width, height))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = xx / s, yy / s
    top, bottom = rng.uniform(90, 220, 3), rng.uniform(20, 120, 3)
    vv = (yy / max(height - 1, 1))[..., None]
    img = (top * (1 - vv) + bottom * vv).astype(np.float32)
    # fractal texture (sum of octaves), its strength itself a smooth field: flat and busy areas
    texture = sum(_value_noise(rng, height, width, c) * a
                  for c, a in ((s / 6, 1.0), (s / 24, 0.5), (s / 96, 0.3), (4.0, 0.2)))
    strength = 0.5 + 0.5 * _value_noise(rng, height, width, s / 3)
    img += (18.0 * texture * strength)[..., None]
    for i in range(14):
        cx, cy = rng.uniform(0, width / s), rng.uniform(0, height / s)
        rx, ry = rng.uniform(0.04, 0.25, 2)
        ang = rng.uniform(0, math.pi)
        soft = float(rng.choice([0.004, 0.01, 0.04]))  # edge width: sharp .. out of focus
        colour = rng.uniform(10, 245, 3).astype(np.float32)
        stripes = rng.uniform(0, 30) if i % 4 == 1 else 0.0  # fabric-like fine pattern
        tex_amp = rng.uniform(0, 25)
        # work inside the shape's bounding box (the mask is < 1e-4 outside it)
        r = max(rx, ry) * (1 + 10 * soft) * math.sqrt(2) * s
        x0, x1 = max(0, int(cx * s - r)), min(width, int(cx * s + r) + 1)
        y0, y1 = max(0, int(cy * s - r)), min(height, int(cy * s + r) + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        du, dv = u[y0:y1, x0:x1] - cx, v[y0:y1, x0:x1] - cy
        a = (du * math.cos(ang) + dv * math.sin(ang)) / rx
        b = (-du * math.sin(ang) + dv * math.cos(ang)) / ry
        dist = np.maximum(np.abs(a), np.abs(b)) if i % 3 == 2 else np.sqrt(a * a + b * b)
        mask = (1.0 / (1.0 + np.exp(np.clip((dist - 1.0) / soft, -50, 50))))[..., None]
        shade = 0.7 + 0.3 * np.clip(0.5 - 0.5 * (a * 0.6 + b * 0.8), 0, 1)  # lit from one side
        detail = tex_amp * texture[y0:y1, x0:x1] + stripes * np.sin(a * rx * s * 0.9)
        obj = colour * shade[..., None] + detail[..., None]
        img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - mask) + obj * mask
    img += rng.normal(0.0, 2.5, img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def image_from_file(path: str | os.PathLike, width: int, height: int) -> np.ndarray:
    """A picture file (e.g. a Kodak image) brought to (height, width, 3) uint8 without resampling:
    mirror-tiled when smaller, cropped (top-left) when larger, so its statistics stay those of
    the photo."""
    from .images import load_image

    px = load_image(str(path)).pixels
    if px.shape[2] == 1:
        px = np.repeat(px, 3, axis=2)
    ph, pw = max(0, height - px.shape[0]), max(0, width - px.shape[1])
    if ph or pw:
        px = np.pad(px, ((0, ph), (0, pw), (0, 0)), mode="symmetric")
    return np.ascontiguousarray(px[:height, :width])


def make_picture(width: int, height: int, path: str | None = None, seed: int = 0) -> np.ndarray:
    """The benchmark's picture: from ``path`` (see :func:`image_from_file`) or synthetic."""
    return image_from_file(path, width, height) if path else synthetic_photo(width, height, seed)


# ---- timing helpers ----------------------------------------------------------------------------

def median_time(fn: Callable[[], object], runs: int, warmup: int = 1) -> tuple[float, object]:
    """Median wall time (s) of ``runs`` calls of fn after ``warmup`` uncounted calls; also the last
    return value."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def count_kmac_per_pixel(fn: Callable[[], object], pixels: int) -> float:
    """kMAC per pixel of one call of fn: conv + matmul FLOPs from FlopCounterMode, / 2 / 1000."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2.0 / pixels / 1000.0


# ---- Adapix ------------------------------------------------------------------------------------

def _padded(width: int, height: int, multiple: int) -> tuple[int, int]:
    return -(-width // multiple) * multiple, -(-height // multiple) * multiple


def bench_adapix(codec, pixels: np.ndarray, profile: str = "fast", runs: int = DEFAULT_RUNS,
                 quality: float = 50.0, time_budget: float | None = None,
                 complexity: bool = True) -> tuple[SpeedResult, bytes]:
    """Median encode and decode time of one picture (H, W, 3 uint8) with a Codec and profile;
    also the decoder's kMAC/pixel. Returns the result and the coded bytes."""
    from .images import RasterImage

    raster = RasterImage(pixels=pixels)
    h, w = pixels.shape[:2]
    # no torch.no_grad() here: the model's coding methods have their own, and optimising
    # profiles need gradients (as in the CLI)
    enc_s, res = median_time(lambda: codec.encode_ex(raster, quality=quality, profile=profile,
                                                     time_budget=time_budget), runs)
    data = res.data
    dec_s, _ = median_time(lambda: codec.decode_ex(data), runs)
    kmac = count_kmac_per_pixel(lambda: codec.decode_ex(data), w * h) if complexity else None
    return SpeedResult(name=f"adapix:{profile}", width=w, height=h, encode_s=enc_s,
                       decode_s=dec_s, runs=runs, kmac_per_pixel=kmac, bytes=len(data)), data


def synthesis_input(model, width: int, height: int, seed: int = 0):
    """(y_hat, s_hat, t) of the latent size of a width x height image: integer-valued y_hat with
    a spread like a coded latent's, a zero model stream, the middle quality."""
    wp, hp = _padded(width, height, model.cfg.pad_multiple)
    g = torch.Generator().manual_seed(seed)
    y_hat = torch.round(2.0 * torch.randn(1, model.cfg.M, hp // 16, wp // 16, generator=g))
    s_hat = torch.zeros(1, model.cfg.syntax_dim)
    t = torch.tensor([(len(model.cfg.lambdas) - 1) / 2.0])
    return y_hat, s_hat, t


def bench_synthesis(model, width: int, height: int, runs: int = DEFAULT_RUNS, seed: int = 0,
                    complexity: bool = True) -> SpeedResult:
    """The synthesis transform alone (model.synthesize, no post-filter) at the latent size of a
    width x height image: median time and kMAC/pixel."""
    y_hat, s_hat, t = synthesis_input(model, width, height, seed)

    def run():
        with torch.no_grad():
            return model.synthesize(y_hat, s_hat, t, postfilter=False).clamp(0, 1)

    dec_s, _ = median_time(run, runs)
    kmac = count_kmac_per_pixel(run, width * height) if complexity else None
    return SpeedResult(name=f"adapix:{SYNTHESIS}", width=width, height=height, encode_s=None,
                       decode_s=dec_s, runs=runs, kmac_per_pixel=kmac,
                       note="g_s only (model.synthesize), no entropy decoding")


# ---- CompressAI mbt2018 ------------------------------------------------------------------------

class _StubTransform:
    """Stands in for torch_geometric's BaseTransform / Center (subclassed at compressai import)."""

    def __init__(self, *args, **kwargs):
        pass


class _StubData(dict):
    """Stands in for torch_geometric.data.Data (only named in compressai's signatures)."""


def _functional_transform(name: str):
    """Stands in for torch_geometric.data.datapipes.functional_transform: a no-op decorator."""
    return lambda cls: cls


def _stub_module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name, f"adapix.bench stub of {name} (not installed) for compressai")
    mod.__path__ = []  # a package, so that submodules can hang below it
    mod.__dict__.update(attrs)
    mod.__adapix_stub__ = True
    return mod


def _compressai_stubs() -> dict[str, types.ModuleType]:
    """The modules compressai imports at package import for features the benchmark never uses,
    with exactly the attributes touched at import time:

    * ``torchvision.transforms`` (registry/transforms.py copies the capitalised names of its
      ``__dict__`` into a registry: an empty module gives none);
    * ``torch_geometric.transforms.BaseTransform`` / ``Center``, ``torch_geometric.data.Data``,
      ``torch_geometric.data.datapipes.functional_transform`` (point-cloud transforms, defined as
      decorated subclasses at import);
    * ``pandas``, ``requests`` (point-cloud datasets, imported but used only when downloading).
    """
    return {
        "torchvision": _stub_module("torchvision"),
        "torchvision.transforms": _stub_module("torchvision.transforms"),
        "torch_geometric": _stub_module("torch_geometric"),
        "torch_geometric.data": _stub_module("torch_geometric.data", Data=_StubData),
        "torch_geometric.data.datapipes": _stub_module(
            "torch_geometric.data.datapipes", functional_transform=_functional_transform),
        "torch_geometric.transforms": _stub_module(
            "torch_geometric.transforms", BaseTransform=_StubTransform, Center=_StubTransform),
        "pandas": _stub_module("pandas"),
        "requests": _stub_module("requests"),
    }


@contextlib.contextmanager
def _stubbed_missing_modules(stubs: dict[str, types.ModuleType]) -> Iterator[list[str]]:
    """Puts the stubs of the top-level packages that are NOT installed into sys.modules (linked as
    attributes of their parents, as the import system does), and takes them out again afterwards:
    modules already imported keep their references, later imports see the real state."""
    tops = {name.split(".")[0] for name in stubs}
    missing = {t for t in tops if t not in sys.modules and importlib.util.find_spec(t) is None}
    added: list[str] = []
    for name, mod in stubs.items():
        if name.split(".")[0] not in missing:
            continue
        sys.modules[name] = mod
        added.append(name)
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(stubs[parent], child, mod)
    try:
        yield sorted(missing)
    finally:
        for name in added:
            if sys.modules.get(name) is stubs[name]:
                del sys.modules[name]


_COMPRESSAI: tuple[types.ModuleType | None, str | None] | None = None


def import_compressai() -> tuple[types.ModuleType | None, str | None]:
    """(compressai module, None), or (None, one-line reason) when it cannot be imported.

    compressai's package ``__init__`` imports all of its subpackages, including point-cloud and
    dataset code that needs torchvision, torch_geometric, pandas and requests. Those that are not
    installed are stubbed for the duration of the import (:func:`_compressai_stubs`); the result
    is cached."""
    global _COMPRESSAI
    if _COMPRESSAI is not None:
        return _COMPRESSAI
    if "compressai" not in sys.modules and importlib.util.find_spec("compressai") is None:
        _COMPRESSAI = (None, f"compressai is not installed ({COMPRESSAI_INSTALL})")
        return _COMPRESSAI
    try:
        with _stubbed_missing_modules(_compressai_stubs()):
            import compressai
            import compressai.zoo  # noqa: F401
    except ImportError as exc:
        _COMPRESSAI = (None, f"compressai cannot be imported ({exc}); its import-time needs: "
                             f"pip install -e '.[bench]'")
    except Exception as exc:  # noqa: BLE001  (any breakage inside a third-party import)
        _COMPRESSAI = (None, f"compressai import failed: {type(exc).__name__}: {exc}")
    else:
        _COMPRESSAI = (compressai, None)
    return _COMPRESSAI


def compressai_unavailable_reason() -> str | None:
    return import_compressai()[1]


def build_mbt2018(quality: int = DEFAULT_MBT_QUALITY, seed: int = 0):
    """CompressAI's mbt2018 (JointAutoregressiveHierarchicalPriors) with random weights at a zoo
    quality (1-4: N=192, M=192; 5-8: N=192, M=320), entropy tables built, in eval mode."""
    compressai, reason = import_compressai()
    if compressai is None:
        raise RuntimeError(reason)
    torch.manual_seed(seed)
    net = compressai.zoo.mbt2018(quality=quality, pretrained=False).eval()
    net.update(force=True)
    return net


def mbt_input(pixels: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, Hp, Wp) float in [0, 1], edge-padded to a multiple of 64."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float().div(255.0)[None]
    h, w = pixels.shape[:2]
    wp, hp = _padded(w, h, MBT_PAD)
    if (hp, wp) != (h, w):
        x = torch.nn.functional.pad(x, (0, wp - w, 0, hp - h), mode="replicate")
    return x


def bench_mbt2018(pixels: np.ndarray, runs: int = DEFAULT_RUNS,
                  quality: int = DEFAULT_MBT_QUALITY, seed: int = 0, complexity: bool = True,
                  net=None) -> tuple[SpeedResult, dict]:
    """Median compress/decompress time of mbt2018 (random weights) on the picture; also its
    decoder's kMAC/pixel. Returns the result and the compress output (strings, shape)."""
    net = build_mbt2018(quality, seed) if net is None else net
    h, w = pixels.shape[:2]
    x = mbt_input(pixels)
    with torch.no_grad():
        enc_s, out = median_time(lambda: net.compress(x), runs)
        dec_s, rec = median_time(lambda: net.decompress(out["strings"], out["shape"]), runs)
    if tuple(rec["x_hat"].shape) != tuple(x.shape):
        raise RuntimeError(f"mbt2018 decoded shape {tuple(rec['x_hat'].shape)} != {tuple(x.shape)}")
    kmac = (count_kmac_per_pixel(lambda: net.decompress(out["strings"], out["shape"]), w * h)
            if complexity else None)
    nbytes = sum(len(s) for group in out["strings"] for s in group)
    return SpeedResult(name=f"mbt2018:q{quality}", width=w, height=h, encode_s=enc_s,
                       decode_s=dec_s, runs=runs, kmac_per_pixel=kmac, bytes=nbytes,
                       note="CompressAI 1.2.8, random weights, serial context-model decoding"), out


# ---- peak memory in a fresh process ------------------------------------------------------------

def _maxrss_mb() -> float:
    """Peak resident memory of this process so far, in MB.

    Linux: ``VmHWM`` of /proc/self/status, the memory map's high-water mark. That is what
    ``getrusage(RUSAGE_SELF).ru_maxrss`` reports too, except that ru_maxrss is also at least the
    peak of the *parent* process at the moment it started this one (the kernel carries the old
    memory map's peak over on exec), which would hide the child's own peak when the parent, like
    the benchmark, is large. Elsewhere: ru_maxrss."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024.0  # bytes on macOS, else KiB


def _reset_high_water_mark() -> bool:
    """Linux: resets the process's peak RSS (and so ru_maxrss) to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _memory_child(spec: dict) -> dict:
    """Runs in a fresh interpreter: prepares one operation, then measures its peak memory."""
    torch.set_num_threads(spec["threads"])
    kind = spec["kind"]
    if kind.startswith("adapix"):
        from .codec import Codec
        from .images import RasterImage

        codec = Codec(spec["model"])
        if kind == "adapix-encode":
            raster = RasterImage(pixels=make_picture(spec["width"], spec["height"],
                                                     spec["image"], spec["seed"]))
            op = lambda: codec.encode_ex(raster, quality=spec["quality"],  # noqa: E731
                                         profile=spec["profile"], time_budget=spec["time_budget"])
        elif kind == "adapix-decode":
            data = spec["data"]
            op = lambda: codec.decode_ex(data)  # noqa: E731
        elif kind == "adapix-synthesis":
            y_hat, s_hat, t = synthesis_input(codec.model, spec["width"], spec["height"],
                                              spec["seed"])
            op = lambda: codec.model.synthesize(y_hat, s_hat, t, postfilter=False)  # noqa: E731
        else:
            raise ValueError(kind)
    elif kind.startswith("mbt2018"):
        net = build_mbt2018(spec["mbt_quality"], spec["seed"])
        if kind == "mbt2018-encode":
            x = mbt_input(make_picture(spec["width"], spec["height"], spec["image"], spec["seed"]))
            op = lambda: net.compress(x)  # noqa: E731
        elif kind == "mbt2018-decode":
            strings, shape = spec["strings"], spec["shape"]
            op = lambda: net.decompress(strings, shape)  # noqa: E731
        else:
            raise ValueError(kind)
    else:
        raise ValueError(kind)
    gc.collect()
    reset = _reset_high_water_mark()
    base = _maxrss_mb()
    if kind == "adapix-encode":
        op()  # optimising profiles need gradients
    else:
        with torch.no_grad():
            op()
    peak = _maxrss_mb()
    return {"delta_mb": peak - base, "base_mb": base, "peak_mb": peak, "hwm_reset": reset}


def _memory_child_main() -> None:
    spec = pickle.loads(sys.stdin.buffer.read())
    result = _memory_child(spec)
    sys.stdout.write("\n" + _RESULT_TAG + json.dumps(result) + "\n")
    sys.stdout.flush()


def measure_peak_memory(spec: dict, timeout: float = 3600.0) -> float:
    """Peak memory (MB) above the baseline of one operation, in a fresh ``python -c`` process.

    spec: ``kind`` (adapix-encode, adapix-decode, adapix-synthesis, mbt2018-encode,
    mbt2018-decode), ``threads``, and what that kind needs (model, width, height, image, seed,
    profile, quality, time_budget, data; mbt_quality, strings, shape)."""
    code = "from adapix.bench import _memory_child_main; _memory_child_main()"
    proc = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(spec),
                          capture_output=True, timeout=timeout)
    out = proc.stdout.decode("utf-8", "replace")
    for line in reversed(out.splitlines()):
        if line.startswith(_RESULT_TAG):
            return float(json.loads(line[len(_RESULT_TAG):])["delta_mb"])
    err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    raise RuntimeError(f"memory subprocess ({spec['kind']}) failed with exit status "
                       f"{proc.returncode}: {err[-1] if err else 'no output'}")


def memory_available() -> str | None:
    """None if peak memory can be measured here, else the reason."""
    try:
        import resource  # noqa: F401
    except ImportError:
        return "peak memory not measured: the resource module is not available on this platform"
    return None


# ---- ratios and table --------------------------------------------------------------------------

def _pick_adapix(rows: list[SpeedResult]) -> SpeedResult | None:
    coded = [r for r in rows if r.name.startswith("adapix:") and r.name != f"adapix:{SYNTHESIS}"
             and r.decode_s]
    fast = [r for r in coded if r.name == "adapix:fast"]
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
        syn = next((r for r in rows if r.name == f"adapix:{SYNTHESIS}" and r.decode_s), None)
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


# ---- the whole benchmark -----------------------------------------------------------------------

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

    from .codec import Codec
    from .profiles import PROFILES, get_profile

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
                 "mbt_quality": cfg.mbt_quality}
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
                                         cfg.time_budget, cfg.complexity)
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
            row = bench_synthesis(codec.model, w, h, cfg.runs, cfg.seed, cfg.complexity)
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


__all__ = ["SpeedResult", "Ratios", "BenchConfig", "BenchReport", "parse_size", "parse_sizes",
           "synthetic_photo", "image_from_file", "make_picture", "median_time", "torch_threads",
           "count_kmac_per_pixel", "bench_adapix", "bench_synthesis", "synthesis_input",
           "import_compressai", "compressai_unavailable_reason", "build_mbt2018", "mbt_input",
           "bench_mbt2018", "measure_peak_memory", "memory_available", "compute_ratios",
           "format_table", "report_to_json", "write_json", "environment_info", "run_bench",
           "DEFAULT_SIZES", "DEFAULT_RUNS", "DEFAULT_THREADS", "COMPRESSAI_INSTALL"]
