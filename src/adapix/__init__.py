"""Adapix: a learned image codec that adapts itself to every image it compresses.

    >>> import adapix
    >>> data = adapix.encode("photo.png", quality=60)   # .apx bytes, shipped model
    >>> img = adapix.decode(data)                        # PIL.Image
    >>> codec = adapix.Codec()                           # keep a loaded model for repeated use
"""

__version__ = "0.1.0"

from .codec import Codec, DecodeResult, EncodeResult, decode, encode  # noqa: E402
from .errors import (AdapixError, FormatError, InputError, ModelMismatchError,  # noqa: E402
                     WeightsError)

__all__ = ["Codec", "EncodeResult", "DecodeResult", "encode", "decode", "AdapixError",
           "FormatError", "InputError", "ModelMismatchError", "WeightsError", "__version__"]
