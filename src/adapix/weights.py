"""Weights files: safetensors with the model config, entropy tables and a format version.

Layout of a weights file (``*.safetensors``):

* tensors ``model.<name>``: the state dict (fp16 or fp32, see ``export_weights``);
* tensors ``tables.z.pmf``/``tables.z.offset``, ``tables.s.pmf``/``tables.s.offset`` (factorized
  priors, float64/int64) and ``tables.scale`` (the Gaussian scale table, float64);
* metadata: ``format_version``, ``config`` (JSON of :class:`adapix.config.ModelConfig`),
  ``model_id`` (a stable string written into every ``.apx``), ``postfilter`` ("1" if trained),
  ``steps`` and free-form ``notes``.

The weights hash written into ``.apx`` headers is the first 8 bytes of SHA-256 of the file.
Tables are built here, at export time (``build_tables``); loading never builds them, and a file
without them is refused with a clear error.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load, save as st_save

from .config import FORMAT_VERSION, ModelConfig
from .entropy.factorized import CategoricalTable
from .entropy.fixedpoint import gelu_lut
from .entropy.gaussian import SnappedGaussian, log_scale_bounds, scale_table
from .errors import WeightsError
from .model import AdapixModel

MODEL_ID_RE = re.compile(r"^[a-z0-9._-]{1,64}$")
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "adapix-default.safetensors"


@dataclass
class LoadedModel:
    model: AdapixModel
    model_id: str
    weights_hash: bytes            # 8 bytes
    postfilter_trained: bool
    meta: dict = field(default_factory=dict)


def build_tables(model: AdapixModel) -> None:
    """Builds the entropy-coding tables of a model in place (done at export)."""
    model.z_prior.table = model.z_prior.build_table()
    model.s_prior.table = model.s_prior.build_table()
    stds = scale_table(model.cfg)
    model.snap = SnappedGaussian(model.cfg, stds, log_scale_bounds(stds))
    model.gelu_lut = gelu_lut()


def _hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:8]


def _canonical(data: bytes) -> bytes:
    """Rewrites the safetensors JSON header with sorted keys, so that the same weights always
    give the same bytes (and the same hash); the tensor data is unchanged."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n:]


def weights_bytes(model: AdapixModel, model_id: str, *, fp16: bool = True,
                  postfilter_trained: bool = False, steps: int = 0, notes: str = "") -> bytes:
    if not MODEL_ID_RE.match(model_id):
        raise ValueError(f"model id must match {MODEL_ID_RE.pattern}: {model_id!r}")
    if model.z_prior.table is None or model.s_prior.table is None or model.gelu_lut is None:
        build_tables(model)
    tensors: dict[str, torch.Tensor] = {}
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        keep32 = "prior" in name or "gain" in name  # tiny and precision-sensitive
        tensors["model." + name] = t.half() if fp16 and t.is_floating_point() and not keep32 else t
    for key, prior in (("z", model.z_prior), ("s", model.s_prior)):
        tab = prior.table
        tensors[f"tables.{key}.pmf"] = torch.from_numpy(np.ascontiguousarray(tab.pmf, np.float64))
        tensors[f"tables.{key}.offset"] = torch.from_numpy(tab.offset.astype(np.int64))
    tensors["tables.scale"] = torch.from_numpy(model.snap.stds.astype(np.float64))
    tensors["tables.scale_log_bounds"] = torch.from_numpy(model.snap.log_bounds.astype(np.float64))
    tensors["tables.gelu_lut"] = model.gelu_lut.to(torch.int64).contiguous()
    meta = {"format_version": str(FORMAT_VERSION), "config": model.cfg.to_json(),
            "model_id": model_id, "postfilter": "1" if postfilter_trained else "0",
            "steps": str(steps), "notes": notes}
    return _canonical(st_save(tensors, metadata=meta))


def export_weights(model: AdapixModel, path: str | os.PathLike, model_id: str, **kw) -> bytes:
    """Writes a weights file atomically; returns its 8-byte hash."""
    data = weights_bytes(model, model_id, **kw)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".safetensors")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return _hash(data)


def load_weights(path: str | os.PathLike | None = None) -> LoadedModel:
    """Loads a model from a weights file (default: the shipped model)."""
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {path}: {exc.strerror or exc}") from None
    return load_weights_bytes(data, str(path))


def load_weights_bytes(data: bytes, name: str = "<bytes>") -> LoadedModel:
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + header_len]).get("__metadata__", {}) or {}
    except (SafetensorError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{name} is not a valid safetensors weights file ({exc})") from None
    try:
        version = int(meta.get("format_version", "0") or 0)
    except (TypeError, ValueError):
        raise WeightsError(f"{name}: invalid weights format version "
                           f"{meta.get('format_version')!r}") from None
    if version != FORMAT_VERSION:
        raise WeightsError(f"{name}: weights format version {version} is not supported "
                           f"(this adapix reads version {FORMAT_VERSION})")
    try:
        cfg = ModelConfig.from_json(meta["config"])
    except (KeyError, ValueError, TypeError) as exc:
        raise WeightsError(f"{name}: missing or invalid model config ({exc})") from None
    needed = ["tables.z.pmf", "tables.z.offset", "tables.s.pmf", "tables.s.offset", "tables.scale",
              "tables.scale_log_bounds", "tables.gelu_lut"]
    missing = [k for k in needed if k not in tensors]
    if missing:
        raise WeightsError(f"{name}: entropy tables missing ({', '.join(missing)}); "
                           f"re-export the checkpoint with `adapix export`")
    try:
        model = AdapixModel(cfg)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise WeightsError(f"{name}: invalid model config ({exc})") from None
    state = {k[len("model."):]: v.float() if v.is_floating_point() else v
             for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{name}: tensors do not match the stored config ({exc})") from None
    model.z_prior.table = CategoricalTable(tensors["tables.z.pmf"].numpy(),
                                           tensors["tables.z.offset"].numpy())
    model.s_prior.table = CategoricalTable(tensors["tables.s.pmf"].numpy(),
                                           tensors["tables.s.offset"].numpy())
    model.snap = SnappedGaussian(cfg, tensors["tables.scale"].numpy(),
                                 tensors["tables.scale_log_bounds"].numpy())
    model.gelu_lut = tensors["tables.gelu_lut"]
    model.eval()
    model_id = meta.get("model_id", "")
    if not MODEL_ID_RE.match(model_id):
        raise WeightsError(f"{name}: invalid model id {model_id!r}")
    return LoadedModel(model=model, model_id=model_id, weights_hash=_hash(data),
                       postfilter_trained=meta.get("postfilter") == "1", meta=dict(meta))
