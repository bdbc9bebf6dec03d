"""Error types of Adapix.

Every failure a user can cause (bad input image, corrupt or foreign ``.apx`` file, a model that does
not match a file) raises a subclass of :class:`AdapixError` with a one-line message. The CLI prints
``adapix: error: <message>`` and exits non-zero; it never shows a traceback for these.
"""


class AdapixError(Exception):
    """Base class of all errors Adapix reports to users."""


class FormatError(AdapixError):
    """An ``.apx`` stream is not valid: wrong magic, unsupported version, truncated, corrupted."""


class ModelMismatchError(AdapixError):
    """An ``.apx`` file needs other weights than the loaded model (model id or weights hash differ)."""


class InputError(AdapixError):
    """An input image cannot be read or is not supported (not an image, zero pixels, too large...)."""


class WeightsError(AdapixError):
    """A weights file is missing, unreadable, of an unsupported format version, or lacks tables."""
