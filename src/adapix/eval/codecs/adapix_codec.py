"""The Adapix codec, through ``adapix.api``."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Iterable

import numpy as np

from .base import Codec, _to_rgb_array, check_rgb


# the default sweep: 5 … 95 as since session 10, and 100, the only quality that comes near the
# 1.5 bpp end of issue 3's target range (measured as a separate step in sessions 18–31)
DEFAULT_QUALITIES = (5, 15, 25, 35, 50, 65, 80, 95, 100)


def parse_qualities(text: str) -> list[float]:
    """'15,35,65,95' -> [15, 35, 65, 95]; ValueError unless 2+ distinct numbers in 0..100."""
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"qualities must be comma-separated numbers, got {text!r}") from None
    return _checked_qualities(vals, text)


def _checked_qualities(vals: list[float], given: Any) -> list[float]:
    """``vals`` sorted, without duplicates, integral values as ``int`` (so that a quality keys the
    result cache as it always did: ``50``, not ``50.0``); ValueError unless 2+ distinct in 0..100."""
    if len(set(vals)) < 2 or not all(0 <= v <= 100 for v in vals):
        raise ValueError(f"need at least 2 distinct qualities in 0..100, got {given!r}")
    return sorted(set(int(v) if v.is_integer() else v for v in vals))


def normalise_qualities(qualities: str | Iterable[float] | None) -> tuple[float, ...] | None:
    """A quality sweep as :class:`AdapixCodec` keeps it: ``None`` (the default sweep) stays
    ``None``; a string is read by :func:`parse_qualities`; numbers are checked the same way."""
    if qualities is None:
        return None
    if isinstance(qualities, str):
        return tuple(parse_qualities(qualities))
    try:
        vals = [float(v) for v in qualities]
    except (TypeError, ValueError):
        raise ValueError(f"qualities must be numbers, got {qualities!r}") from None
    return tuple(_checked_qualities(vals, qualities))


@dataclasses.dataclass(frozen=True)
class AdapixOptions:
    """Options of the Adapix codecs of one evaluation (``adapix eval --adapix-weights`` and
    ``--adapix-qualities``), passed explicitly: CLI -> :func:`~adapix.eval.runner.run_eval` ->
    :func:`~adapix.eval.codecs.get_codecs` -> :class:`AdapixCodec` (and, pickled with every job,
    to the worker processes). ``weights``: a weights file (``None``: the shipped model); the
    CLI passes it resolved, as it is part of the cache fingerprint. ``qualities``: the quality
    sweep (``None``: :data:`DEFAULT_QUALITIES`), normalised by :func:`normalise_qualities`."""

    weights: str | None = None
    qualities: tuple[float, ...] | None = None

    def __post_init__(self):
        object.__setattr__(self, "weights", None if self.weights is None else str(self.weights))
        object.__setattr__(self, "qualities", normalise_qualities(self.qualities))


class AdapixCodec(Codec):
    """The Adapix codec, through ``adapix.api.Codec`` (imported on first use, so that an
    evaluation of the conventional codecs alone does not load PyTorch).

    API used: ``adapix.api.Codec(weights)`` with ``encode(image: PIL.Image.Image, quality: float,
    profile: str) -> bytes`` and ``decode(data: bytes) -> PIL.Image.Image``; quality 0..100, higher is
    better. ``profile=None`` uses the API's default profile (``fast``). ``weights=None`` uses the shipped model.
    ``qualities`` is the sweep of :meth:`params` (``None``: :data:`DEFAULT_QUALITIES`; see
    :func:`normalise_qualities`); :class:`AdapixOptions` carries both from the CLI. The model
    identity (``model_id`` and the weights hash) is part of the cache fingerprint, so results of
    other weights are not reused. ``bf16=True`` encodes with ``bf16=True`` (the synthesis in
    bfloat16, in the encoder and so in the decoder); it is part of the name
    (``adapix-<profile>-bf16``) and of the fingerprint.
    """

    extension = "apx"
    param_name = "quality"

    def __init__(self, profile: str | None = None, weights: str | None = None,
                 bf16: bool = False, qualities: str | Iterable[float] | None = None):
        self.profile = profile
        self.weights = weights
        self.qualities = normalise_qualities(qualities)
        self.bf16 = bool(bf16)
        self.name = ("adapix" if profile is None else f"adapix-{profile}") + (
            "-bf16" if self.bf16 else "")
        self.description = (
            f"Adapix learned codec (adapix.api, profile {profile or 'default'}"
            f"{', bf16 synthesis' if self.bf16 else ''}), param = quality 0-100"
        )
        self._api_codec = None
        self._load_error: str | None = None

    def _weights(self) -> str | None:
        return self.weights or None

    def available(self) -> str | None:
        try:
            self._codec()
        except Exception as exc:  # e.g. no weights file yet
            msg = " ".join(str(exc).split())
            return f"the Adapix model cannot be loaded ({type(exc).__name__}: {msg})"
        return None

    def params(self) -> list:
        return list(DEFAULT_QUALITIES if self.qualities is None else self.qualities)

    def _codec(self):
        if self._api_codec is None:
            from adapix.api import Codec as ApiCodec  # here: PyTorch only when Adapix is used

            weights = self._weights()
            self._api_codec = ApiCodec(weights) if weights else ApiCodec()
        return self._api_codec

    def encode(self, rgb: np.ndarray, param: Any) -> bytes:
        from PIL import Image

        img = Image.fromarray(check_rgb(rgb), "RGB")
        kwargs = {**({} if self.profile is None else {"profile": self.profile}),
                  **({"bf16": True} if self.bf16 else {})}
        return bytes(self._codec().encode(img, quality=float(param), **kwargs))

    def decode(self, data: bytes) -> np.ndarray:
        return _to_rgb_array(self._codec().decode(data))

    def version(self) -> str:
        try:
            import adapix

            version = str(getattr(adapix, "__version__", ""))
        except Exception:  # noqa: BLE001
            version = ""
        try:
            api = self._codec()
            model_id = str(getattr(api, "model_id", ""))
            h = getattr(getattr(api, "loaded", None), "weights_hash", b"")
            wh = h.hex() if isinstance(h, (bytes, bytearray)) else str(h or "")
        except Exception:  # noqa: BLE001
            model_id, wh = "", ""
        return f"adapix {version} model {model_id} hash {wh} weights {self._weights() or 'default'}"

    def fingerprint(self, param: Any = None) -> str:
        """The codec's fingerprint and :meth:`_profile_digest` at quality ``param``."""
        return (f"{super().fingerprint()} {self._profile_digest(param)}"
                + (" bf16" if self.bf16 else ""))

    def _profile_digest(self, quality: Any = None) -> str:
        """The settings of the profile as it codes at ``quality`` (:meth:`Profile.at`; None:
        the whole profile), hashed: after a profile changes, its cached results are measured
        again instead of being reused, but only at the qualities where what it does changed
        (e.g. a change to what runs below some lambda keeps the rows above it). Settings left at
        their defaults are not hashed, so a new setting added with a default that keeps the old
        behaviour does not void any row."""
        import hashlib

        try:
            import torch

            from adapix.model import quality_to_position
            from adapix.profiles import get_profile

            prof = get_profile(self.profile or "fast")
            if quality is not None:
                model = self._codec().model
                t = quality_to_position(model.cfg, float(quality))
                prof = prof.at(float(model.lam(torch.tensor([t]))[0]))
        except Exception:  # noqa: BLE001  (an unknown profile fails at encode time, clearly)
            return "profile ?"
        text = json.dumps(settings(prof), sort_keys=True)
        return f"profile {prof.name} {hashlib.sha256(text.encode()).hexdigest()[:12]}"


def settings(obj: Any) -> Any:
    """A dataclass's fields that differ from their defaults, recursively (tuples as lists; the
    profile's ``description``, which is only text, left out): what a profile's digest hashes."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.name == "description":
                continue
            if f.default is not dataclasses.MISSING and value == f.default:
                continue
            if f.default_factory is not dataclasses.MISSING and value == f.default_factory():
                continue
            out[f.name] = settings(value)
        return {"type": type(obj).__name__, **out}
    if isinstance(obj, (tuple, list)):
        return [settings(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    return obj
