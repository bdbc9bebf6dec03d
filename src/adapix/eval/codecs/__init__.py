"""Image codecs under evaluation, behind one small interface.

Every codec turns an 8-bit RGB image (``numpy.ndarray``, ``uint8``, ``H x W x 3``) into the bytes of a
real file (JPEG, WebP, AVIF, HEIC, JPEG XL, a JPEG 2000 codestream, a raw H.266 bitstream, an Adapix
``.apx`` stream) and back; rates are always computed from those bytes, headers included.

A codec whose library is missing does not raise on import: :meth:`Codec.available` returns a one-line
reason, and the runner skips it. ``CODECS`` maps codec names to factories; :func:`get_codecs` turns a
list of names (or ``"all"``) into codec instances; the weights and qualities of the Adapix codecs
are passed to it explicitly, as an :class:`AdapixOptions`.

Modules: :mod:`.base` (interface), :mod:`.pillow` (JPEG/WebP/AVIF), :mod:`.heic`, :mod:`.jxl_j2k`
(imagecodecs: JPEG XL/JPEG 2000), :mod:`.vvc` (ffmpeg), :mod:`.adapix_codec`, :mod:`.registry`.
"""

from __future__ import annotations

from .adapix_codec import (DEFAULT_QUALITIES, AdapixCodec, AdapixOptions, normalise_qualities,
                           parse_qualities)
from .base import Codec, _to_rgb_array, check_rgb
from .heic import HeifHEIC
from .jxl_j2k import ImagecodecsJ2K, ImagecodecsJXL, _imagecodecs_reason, _normalise_decoded
from .pillow import PillowAVIF, PillowJPEG, PillowWebP, _pil_version
from .registry import ALIASES, CODECS, _make, codec_names, get_codec, get_codecs
from .vvc import (_RGB2YCC, _SIZE_SEI_UUID, _VVC_MIN_SIZE, _YCC2RGB, FFmpegVVC, _ffmpeg_exe,
                  _ffmpeg_lists, _find_size_sei, _insert_size_sei, _lists_codec, _nal_units,
                  _rgb_to_yuv420p10, _size_from_ffmpeg_log, _size_sei, _upsample2, _vvc_nal_type,
                  _yuv420p10_to_rgb)

__all__ = [
    "Codec",
    "PillowJPEG",
    "PillowWebP",
    "PillowAVIF",
    "HeifHEIC",
    "ImagecodecsJXL",
    "ImagecodecsJ2K",
    "FFmpegVVC",
    "AdapixCodec",
    "AdapixOptions",
    "DEFAULT_QUALITIES",
    "parse_qualities",
    "normalise_qualities",
    "CODECS",
    "codec_names",
    "get_codecs",
    "check_rgb",
]
