"""Peak memory of one operation, measured in a fresh ``python -c`` subprocess."""

from __future__ import annotations

import gc
import json
import pickle
import subprocess
import sys

import torch

from .mbt import build_mbt2018, mbt_input
from .pictures import make_picture
from .results import _RESULT_TAG
from .timing import synthesis_input


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
        from ..codec import Codec
        from ..images import RasterImage

        codec = Codec(spec["model"])
        if kind == "adapix-encode":
            raster = RasterImage(pixels=make_picture(spec["width"], spec["height"],
                                                     spec["image"], spec["seed"]))
            op = lambda: codec.encode_ex(raster, quality=spec["quality"],  # noqa: E731
                                         profile=spec["profile"], time_budget=spec["time_budget"],
                                         bf16=spec.get("bf16", False))
        elif kind == "adapix-decode":
            data = spec["data"]
            op = lambda: codec.decode_ex(data)  # noqa: E731
        elif kind == "adapix-synthesis":
            y_hat, s_hat, t = synthesis_input(codec.model, spec["width"], spec["height"],
                                              spec["seed"])
            op = lambda: codec.model.synthesize(y_hat, s_hat, t, postfilter=False,  # noqa: E731
                                                bf16=spec.get("bf16", False))
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
