"""CompressAI's mbt2018 (serial autoregressive context model) for contrast: the import of compressai
with stub modules for its unused dependencies, model construction and the timing."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
from typing import Iterator

import numpy as np
import torch

from .results import COMPRESSAI_INSTALL, DEFAULT_MBT_QUALITY, DEFAULT_RUNS, MBT_PAD, SpeedResult
from .timing import _padded, count_kmac_per_pixel, median_time


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


def import_compressai() -> tuple[types.ModuleType | None, str | None]:
    """(compressai module, None), or (None, one-line reason) when it cannot be imported.

    compressai's package ``__init__`` imports all of its subpackages, including point-cloud and
    dataset code that needs torchvision, torch_geometric, pandas and requests. Those that are not
    installed are stubbed for the duration of the import (:func:`_compressai_stubs`); the result
    is cached."""
    from .. import bench as cache  # the cache is adapix.bench._COMPRESSAI (reset it there to retry)

    if cache._COMPRESSAI is not None:
        return cache._COMPRESSAI
    if "compressai" not in sys.modules and importlib.util.find_spec("compressai") is None:
        cache._COMPRESSAI = (None, f"compressai is not installed ({COMPRESSAI_INSTALL})")
        return cache._COMPRESSAI
    try:
        with _stubbed_missing_modules(_compressai_stubs()):
            import compressai
            import compressai.zoo  # noqa: F401
    except ImportError as exc:
        cache._COMPRESSAI = (None, f"compressai cannot be imported ({exc}); its import-time needs: "
                                   f"pip install -e '.[bench]'")
    except Exception as exc:  # noqa: BLE001  (any breakage inside a third-party import)
        cache._COMPRESSAI = (None, f"compressai import failed: {type(exc).__name__}: {exc}")
    else:
        cache._COMPRESSAI = (compressai, None)
    return cache._COMPRESSAI


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
