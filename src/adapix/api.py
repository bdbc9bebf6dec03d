"""The Python API (re-exported by ``adapix``): ``encode``, ``decode`` and ``Codec``."""

from .codec import Codec, DecodeResult, EncodeResult, decode, encode

__all__ = ["Codec", "EncodeResult", "DecodeResult", "encode", "decode"]
