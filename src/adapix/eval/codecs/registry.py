"""The ``CODECS`` registry (name -> factory), name aliases and :func:`get_codecs`."""

from __future__ import annotations

from typing import Callable, Iterable

from ...profiles import split_bf16
from .adapix_codec import AdapixCodec, AdapixOptions
from .base import Codec
from .heic import HeifHEIC
from .jxl_j2k import ImagecodecsJ2K, ImagecodecsJXL
from .pillow import PillowAVIF, PillowJPEG, PillowWebP
from .vvc import FFmpegVVC

CODECS: dict[str, Callable[[], Codec]] = {
    "jpeg420": lambda: PillowJPEG("4:2:0"),
    "jpeg444": lambda: PillowJPEG("4:4:4"),
    "webp": PillowWebP,
    "avif": lambda: PillowAVIF("4:2:0"),
    "avif444": lambda: PillowAVIF("4:4:4"),
    "heic": lambda: HeifHEIC("420"),
    "heic444": lambda: HeifHEIC("444"),
    "jxl": ImagecodecsJXL,
    "jpeg2000": ImagecodecsJ2K,
    "vvc": FFmpegVVC,
    "adapix": AdapixCodec,
}
"""Codec name -> factory. ``adapix:<profile>`` names (and ``adapix:<profile>+bf16``, the synthesis
in bfloat16) are also accepted by :func:`get_codecs`, which builds every Adapix codec (``adapix``
too) with its :class:`AdapixOptions`; the ``adapix`` factory here has the default options."""

ALIASES = {"jpeg": "jpeg420", "jpg": "jpeg420", "j2k": "jpeg2000", "jp2": "jpeg2000", "jpegxl": "jxl",
           "h266": "vvc", "heif": "heic"}


def codec_names() -> list[str]:
    return list(CODECS)


def _make(name: str, adapix_options: AdapixOptions | None = None) -> Codec:
    opts = adapix_options if adapix_options is not None else AdapixOptions()
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key == "adapix":
        return AdapixCodec(None, weights=opts.weights, qualities=opts.qualities)
    if key in CODECS:
        return CODECS[key]()
    if key.startswith("adapix:") or key.startswith("adapix-"):
        profile = name.strip()[len("adapix:"):]
        profile, bf16 = split_bf16(profile)
        if not profile:
            raise ValueError(f"empty Adapix profile in codec name {name!r}")
        return AdapixCodec(profile, weights=opts.weights, qualities=opts.qualities, bf16=bf16)
    raise ValueError(f"unknown codec {name!r} (known: {', '.join(CODECS)}, adapix:<profile>)")


def get_codecs(names: str | Iterable[str] | None = None,
               adapix_options: AdapixOptions | None = None) -> list[Codec]:
    """Codec instances for names (a list, or a comma-separated string); ``None``/``"all"`` = every codec.

    ``adapix_options``: weights and qualities of the Adapix codecs (``None``: the defaults).
    Unknown names raise ``ValueError``; duplicates are dropped. Availability is not checked here.
    """
    if names is None:
        names = ["all"]
    if isinstance(names, str):
        names = [n for n in names.split(",")]
    out: list[Codec] = []
    seen: set[str] = set()
    for raw in names:
        raw = raw.strip()
        if not raw:
            continue
        items = list(CODECS) if raw.lower() == "all" else [raw]
        for item in items:
            codec = _make(item, adapix_options)
            if codec.name not in seen:
                seen.add(codec.name)
                out.append(codec)
    if not out:
        raise ValueError("no codec given")
    return out


def get_codec(name: str, adapix_options: AdapixOptions | None = None) -> Codec:
    return _make(name, adapix_options)
