"""Image input/output for Adapix.

Reading (:func:`load_image`) turns anything Pillow can open into a :class:`RasterImage`: 8-bit RGB
or greyscale pixels, an optional separate alpha plane, the ICC profile to carry through, and a list
of human-readable notes about lossy conversions (16-bit reduced to 8-bit, CMYK converted, animation
reduced to its first frame...).

Writing (:func:`save_image`) is atomic: the image is written to a temporary file in the target
directory and moved into place with :func:`os.replace`, so a failure never leaves a partial file.

Also here: lossless coding of the alpha plane (:func:`encode_alpha` / :func:`decode_alpha`) and the
conversions between pixels and model tensors (:func:`to_tensor`, :func:`from_tensor`,
:func:`pad_to_multiple`, :func:`crop`).

Every failure a user can cause raises :class:`adapix.errors.InputError` with a one-line message
naming the file (:class:`adapix.errors.FormatError` for a bad alpha stream).
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import threading
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageOps

from adapix.errors import FormatError, InputError

_PILLOW_LIMIT_LOCK = threading.RLock()

__all__ = [
    "RasterImage",
    "SAVE_FORMATS",
    "load_image",
    "to_pil",
    "save_image",
    "encode_alpha",
    "decode_alpha",
    "pad_to_multiple",
    "crop",
    "to_tensor",
    "from_tensor",
]

WARN_16BIT = "16-bit input reduced to 8-bit"

#: File extension (lower case, with dot) -> Pillow format name, for :func:`save_image`.
SAVE_FORMATS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".ppm": "PPM",
    ".pgm": "PPM",
    ".pnm": "PPM",
    ".bmp": "BMP",
}

# Formats able to store an alpha channel / an ICC profile (Pillow writers).
_ALPHA_FORMATS = {"PNG", "WEBP", "TIFF", "BMP"}
_ICC_FORMATS = {"PNG", "JPEG", "WEBP", "TIFF"}

# Defaults chosen so that a decoded image is stored faithfully; overridable via ``save_image(**opts)``.
_SAVE_DEFAULTS: dict[str, dict] = {
    "JPEG": {"quality": 95, "subsampling": 0},
    "WEBP": {"lossless": True},
}


# --------------------------------------------------------------------------------------------------
# RasterImage


@dataclass
class RasterImage:
    """An 8-bit image as Adapix codes it.

    ``pixels``: uint8 array (H, W, C) with C = 3 (RGB) or C = 1 (greyscale).
    ``alpha``: uint8 array (H, W) or None (opaque).
    ``icc``: ICC profile bytes to carry through, or None (sRGB assumed).
    ``warnings``: human-readable notes on lossy conversions done while reading.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    icc: bytes | None = None
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        p = self.pixels
        if not isinstance(p, np.ndarray) or p.dtype != np.uint8 or p.ndim != 3 or p.shape[2] not in (1, 3):
            raise ValueError(
                f"RasterImage.pixels must be a uint8 array of shape (H, W, 1|3), got "
                f"{getattr(p, 'dtype', type(p))} {getattr(p, 'shape', '')}"
            )
        if self.alpha is not None:
            a = self.alpha
            if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.shape != p.shape[:2]:
                raise ValueError(
                    f"RasterImage.alpha must be a uint8 array of shape {p.shape[:2]}, got "
                    f"{getattr(a, 'dtype', type(a))} {getattr(a, 'shape', '')}"
                )
        if self.icc is not None:
            self.icc = bytes(self.icc)

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def is_grey(self) -> bool:
        return self.pixels.shape[2] == 1


# --------------------------------------------------------------------------------------------------
# helpers


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return msg or type(e).__name__


def _describe(src) -> str:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return "<image bytes>"
    if isinstance(src, Image.Image):
        name = getattr(src, "filename", None)
        return os.fspath(name) if name else "<PIL image>"
    return os.fspath(src)


def _rawmode(im: Image.Image) -> str:
    """Raw mode of the first tile of a not yet loaded image ("" if unknown)."""
    try:
        tile = im.tile[0]
        args = tile.args if hasattr(tile, "args") else tile[3]
        if isinstance(args, tuple):
            args = args[0] if args else ""
        return args if isinstance(args, str) else ""
    except Exception:
        return ""


def _has_transparency(im: Image.Image) -> bool:
    f = getattr(im, "has_transparency_data", None)
    if f is not None:
        return bool(f)
    return "transparency" in im.info or (im.mode == "P" and im.palette is not None and im.palette.mode == "RGBA")


# --------------------------------------------------------------------------------------------------
# loading


@contextlib.contextmanager
def _pillow_limit(max_pixels: int | None):
    """Pillow's decompression-bomb limit follows ``max_pixels`` (Pillow warns above it and refuses
    above twice it; our own check refuses above it), so --max-pixels is the one knob."""
    if max_pixels is None:
        yield
        return
    with _PILLOW_LIMIT_LOCK:
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            with warnings.catch_warnings():  # above max_pixels our own check refuses clearly
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                yield
        finally:
            Image.MAX_IMAGE_PIXELS = old


def load_image(src, *, max_pixels: int | None = None) -> RasterImage:
    """Read an image from a path, encoded bytes or a Pillow image into a :class:`RasterImage`.

    Any Pillow-readable format; EXIF orientation applied; first frame of an animation; 16-bit
    reduced to 8-bit (value / 257, rounded); CMYK, YCbCr, LAB, HSV converted to RGB; palette to RGB
    (RGBA if transparent); alpha kept separately unless fully opaque. ``max_pixels`` limits
    width * height. Raises :class:`InputError` for anything that cannot be read.
    """
    name = _describe(src) if isinstance(src, (bytes, bytearray, memoryview, Image.Image, str, os.PathLike)) else None
    if name is None:
        raise InputError(f"cannot read an image from a {type(src).__name__} object")

    if isinstance(src, Image.Image):
        return _from_pil(src, name, max_pixels)

    if isinstance(src, (bytes, bytearray, memoryview)):
        fp = io.BytesIO(bytes(src))
    else:
        path = os.fspath(src)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
            name = path
        if os.path.isdir(path):
            raise InputError(f"{name}: is a directory, not an image file")
        if not os.path.exists(path):
            raise InputError(f"{name}: no such file")
        try:
            fp = open(path, "rb")
        except OSError as e:
            raise InputError(f"{name}: cannot open: {e.strerror or _one_line(e)}") from None

    with fp, _pillow_limit(max_pixels):
        try:
            im = Image.open(fp)
        except Image.DecompressionBombError as e:
            raise InputError(f"{name}: image too large (Pillow decompression bomb limit): {_one_line(e)}") from None
        except Image.UnidentifiedImageError:
            raise InputError(f"{name}: not an image file, or a format Pillow cannot read") from None
        except Exception as e:  # Pillow raises many types for corrupt headers
            raise InputError(f"{name}: cannot read image: {_one_line(e)}") from None
        with im:
            return _from_pil(im, name, max_pixels)


def _from_pil(im: Image.Image, name: str, max_pixels: int | None) -> RasterImage:
    warnings: list[str] = []
    w, h = im.size
    if w <= 0 or h <= 0:
        raise InputError(f"{name}: image has no pixels ({w}x{h})")
    if max_pixels is not None and w * h > max_pixels:
        raise InputError(f"{name}: image is {w}x{h} = {w * h} pixels, more than the limit of {max_pixels}")

    try:
        n_frames = int(getattr(im, "n_frames", 1) or 1)
        if n_frames > 1:
            im.seek(0)
            warnings.append(f"animated image ({n_frames} frames): only the first frame is used")
        if _rawmode(im).endswith((";16", ";16B", ";16L", ";16N")) and im.mode in ("RGB", "RGBA", "LA"):
            # Pillow decodes 16-bit colour samples to 8 bits itself.
            warnings.append(WARN_16BIT)
        im.load()
    except Image.DecompressionBombError as e:
        raise InputError(f"{name}: image too large (Pillow decompression bomb limit): {_one_line(e)}") from None
    except MemoryError:
        raise InputError(f"{name}: out of memory while decoding the image") from None
    except Exception as e:  # truncated / corrupt data: OSError, SyntaxError, ValueError, EOFError, zlib.error...
        raise InputError(f"{name}: cannot decode image (truncated or corrupt?): {_one_line(e)}") from None

    icc = im.info.get("icc_profile") or None
    if icc is not None and not isinstance(icc, (bytes, bytearray)):
        icc = None

    try:
        im = ImageOps.exif_transpose(im) or im
    except Exception:
        warnings.append("EXIF data could not be read; orientation not applied")

    try:
        pixels, alpha, icc = _convert(im, icc, warnings, name)
    except InputError:
        raise
    except MemoryError:
        raise InputError(f"{name}: out of memory while converting the image") from None
    except Exception as e:
        raise InputError(f"{name}: cannot convert image mode {im.mode}: {_one_line(e)}") from None

    if alpha is not None and bool((alpha == 255).all()):
        alpha = None
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if alpha is not None:
        alpha = np.ascontiguousarray(alpha, dtype=np.uint8)
    return RasterImage(pixels=pixels, alpha=alpha, icc=bytes(icc) if icc else None, warnings=warnings)


def _reduce16(a: np.ndarray) -> np.ndarray:
    """16-bit (or wider integer) samples to 8 bits: round(value / 257), clipped to 0..65535 first."""
    v = np.clip(a.astype(np.int64), 0, 65535)
    return ((v + 128) // 257).astype(np.uint8)  # value/257 is never exactly .5, so this is rounding


def _convert(im: Image.Image, icc, warnings: list[str], name: str):
    """Pillow image (loaded) -> (pixels (H,W,C) uint8, alpha (H,W) uint8 | None, icc)."""
    mode = im.mode

    if mode == "1":
        im, mode = im.convert("L"), "L"
    if mode in ("L", "RGB") and _has_transparency(im):
        im = im.convert("LA" if mode == "L" else "RGBA")
        mode = im.mode
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if (mode == "PA" or _has_transparency(im)) else "RGB")
        mode = im.mode
    if mode == "La":
        im, mode = im.convert("LA"), "LA"
    if mode == "RGBa":
        im, mode = im.convert("RGBA"), "RGBA"
    if mode == "RGBX":
        im, mode = im.convert("RGB"), "RGB"

    if mode == "L":
        return np.asarray(im)[:, :, None], None, icc
    if mode == "LA":
        a = np.asarray(im)
        return a[:, :, :1], a[:, :, 1], icc
    if mode == "RGB":
        return np.asarray(im), None, icc
    if mode == "RGBA":
        a = np.asarray(im)
        return a[:, :, :3], a[:, :, 3], icc

    if mode.startswith("I;16") or mode == "I":
        warnings.append(WARN_16BIT)
        return _reduce16(np.asarray(im))[:, :, None], None, icc
    if mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        warnings.append("floating-point input clipped to 0..255 and rounded to 8-bit")
        return np.round(np.clip(a, 0.0, 255.0)).astype(np.uint8)[:, :, None], None, icc

    if mode == "CMYK":
        warnings.append("CMYK input converted to RGB")
        rgb = None
        if icc is not None:
            try:
                from PIL import ImageCms

                src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
                dst = ImageCms.createProfile("sRGB")
                rgb = ImageCms.profileToProfile(im, src, dst, outputMode="RGB")
            except Exception:
                rgb = None
        if rgb is None:
            rgb = im.convert("RGB")
        # A CMYK profile does not describe RGB pixels: the result is (approximately) sRGB.
        return np.asarray(rgb), None, None

    if mode == "LAB":
        try:
            rgb = im.convert("RGB")
        except Exception:
            from PIL import ImageCms

            t = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
            rgb = ImageCms.applyTransform(im, t)
        warnings.append("LAB input converted to RGB")
        return np.asarray(rgb), None, None

    if mode in ("YCbCr", "HSV"):
        return np.asarray(im.convert("RGB")), None, icc

    # Anything else Pillow knows how to turn into RGB(A).
    try:
        conv = im.convert("RGBA")
    except Exception:
        conv = None
    if conv is not None:
        warnings.append(f"image mode {mode} converted to RGB")
        a = np.asarray(conv)
        return a[:, :, :3], a[:, :, 3], icc
    try:
        conv = im.convert("RGB")
    except Exception:
        raise InputError(f"{name}: unsupported image mode {mode}") from None
    warnings.append(f"image mode {mode} converted to RGB")
    return np.asarray(conv), None, icc


# --------------------------------------------------------------------------------------------------
# writing


def to_pil(img: RasterImage) -> Image.Image:
    """:class:`RasterImage` -> Pillow image of mode L, LA, RGB or RGBA, with ``info["icc_profile"]``."""
    px = np.ascontiguousarray(img.pixels, dtype=np.uint8)
    if img.is_grey:
        planes = px[:, :, 0]
        if img.alpha is not None:
            im = Image.fromarray(np.ascontiguousarray(np.stack([planes, img.alpha], axis=2)), "LA")
        else:
            im = Image.fromarray(np.ascontiguousarray(planes), "L")
    else:
        if img.alpha is not None:
            im = Image.fromarray(np.ascontiguousarray(np.concatenate([px, img.alpha[:, :, None]], axis=2)), "RGBA")
        else:
            im = Image.fromarray(px, "RGB")
    if img.icc:
        im.info["icc_profile"] = bytes(img.icc)
    return im


def _supported_list() -> str:
    return ", ".join(SAVE_FORMATS)


def save_image(img: RasterImage | Image.Image, path, *, format: str | None = None, **options) -> None:
    """Write ``img`` to ``path`` atomically (temp file in the same directory, then ``os.replace``).

    The format comes from ``format`` (a Pillow format name, or an extension like "png") or else from
    the file extension; an unknown one raises :class:`InputError` listing the supported extensions.
    The ICC profile is kept where the format can store it. An alpha channel is refused for formats
    that cannot store it (JPEG, PPM). Lossless WebP and JPEG quality 95 without chroma subsampling
    are the defaults; ``options`` are passed to Pillow and override them.
    """
    try:
        path = os.fspath(path)
    except TypeError:
        raise InputError(f"cannot write an image to a {type(path).__name__} object") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    name = path

    if format is not None:
        key = format.lower().lstrip(".")
        fmt = SAVE_FORMATS.get("." + key) or (format.upper() if format.upper() in set(SAVE_FORMATS.values()) else None)
        if fmt is None:
            raise InputError(f"{name}: unsupported output format {format!r} (supported: {_supported_list()})")
    else:
        ext = os.path.splitext(path)[1].lower()
        fmt = SAVE_FORMATS.get(ext)
        if fmt is None:
            what = f"extension {ext!r}" if ext else "no file extension"
            raise InputError(f"{name}: cannot tell the output format from {what} (supported: {_supported_list()})")

    if os.path.isdir(path):
        raise InputError(f"{name}: is a directory")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise InputError(f"{name}: directory {directory} does not exist")

    if isinstance(img, RasterImage):
        im = to_pil(img)
    elif isinstance(img, Image.Image):
        im = img
    else:
        raise TypeError(f"save_image needs a RasterImage or a PIL image, got {type(img).__name__}")

    if im.mode in ("LA", "RGBA", "PA", "La", "RGBa") and fmt not in _ALPHA_FORMATS:
        raise InputError(
            f"{name}: the {fmt} format cannot store the alpha channel of this image "
            f"(use .png, .webp, .tif or .bmp)"
        )

    params = dict(_SAVE_DEFAULTS.get(fmt, {}))
    params.update(options)
    icc = im.info.get("icc_profile")
    if icc and fmt in _ICC_FORMATS:
        params.setdefault("icc_profile", bytes(icc))

    base = os.path.basename(path)
    for _ in range(100):
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise InputError(f"{name}: cannot write: {e.strerror or _one_line(e)}") from None
    else:  # pragma: no cover
        raise InputError(f"{name}: cannot create a temporary file in {directory}")

    try:
        with os.fdopen(fd, "wb") as f:
            im.save(f, format=fmt, **params)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        if isinstance(e, OSError) and e.strerror:
            raise InputError(f"{name}: cannot write {fmt} file: {e.strerror}") from None
        raise InputError(f"{name}: cannot write {fmt} file: {_one_line(e)}") from None


# --------------------------------------------------------------------------------------------------
# alpha plane


def encode_alpha(alpha: np.ndarray) -> bytes:
    """Lossless coding of an alpha plane (uint8, (H, W)) as a PNG of the L plane."""
    a = np.asarray(alpha)
    if a.dtype != np.uint8 or a.ndim != 2 or a.size == 0:
        raise ValueError(f"alpha must be a non-empty uint8 array (H, W), got {a.dtype} {a.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a), "L").save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def decode_alpha(data: bytes, width: int, height: int) -> np.ndarray:
    """Inverse of :func:`encode_alpha`; the plane must be ``width`` x ``height``, else FormatError."""
    try:
        with Image.open(io.BytesIO(bytes(data)), formats=["PNG"]) as im:
            if im.size != (width, height):
                raise FormatError(
                    f"alpha plane is {im.size[0]}x{im.size[1]}, expected {width}x{height}"
                )
            if im.mode != "L":
                raise FormatError(f"alpha plane has mode {im.mode}, expected L")
            im.load()
            return np.array(im, dtype=np.uint8)
    except FormatError:
        raise
    except Exception as e:
        raise FormatError(f"alpha plane is corrupt: {_one_line(e)}") from None


# --------------------------------------------------------------------------------------------------
# tensors


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad (B, C, H, W) on the right/bottom to the next multiple of ``multiple``.

    Works for any size including 1x1 (index gather, not ``F.pad(mode="replicate")``). Returns the
    padded tensor and the original (H, W) for :func:`crop`.
    """
    if x.dim() != 4:
        raise ValueError(f"pad_to_multiple expects (B, C, H, W), got shape {tuple(x.shape)}")
    if int(multiple) < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    m = int(multiple)
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h == 0 or w == 0:
        raise ValueError(f"cannot pad an empty tensor of shape {tuple(x.shape)}")
    hp, wp = -(-h // m) * m, -(-w // m) * m
    out = x
    if hp != h:
        idx = torch.arange(hp, device=x.device).clamp_(max=h - 1)
        out = out.index_select(2, idx)
    if wp != w:
        idx = torch.arange(wp, device=x.device).clamp_(max=w - 1)
        out = out.index_select(3, idx)
    return out, (h, w)


def crop(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`: keep the top-left ``hw`` = (H, W)."""
    h, w = int(hw[0]), int(hw[1])
    return x[..., :h, :w]


def to_tensor(img: RasterImage) -> torch.Tensor:
    """Pixels -> float32 (1, 3, H, W) in [0, 1]; greyscale is replicated to 3 channels."""
    t = torch.from_numpy(np.array(img.pixels, copy=True)).permute(2, 0, 1).to(torch.float32).div_(255.0)
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    return t.unsqueeze(0).contiguous()


def from_tensor(x: torch.Tensor, grey: bool) -> np.ndarray:
    """(1, 3, H, W) (or (3, H, W)) in [0, 1] -> uint8 (H, W, 3), or (H, W, 1) as the channel mean if
    ``grey``. Values are scaled by 255, clamped and rounded half-to-even."""
    x = x.detach()
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(f"from_tensor expects a batch of one image, got shape {tuple(x.shape)}")
        x = x[0]
    if x.dim() != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"from_tensor expects (1, 3, H, W), got shape {tuple(x.shape)}")
    x = x.to(device="cpu", dtype=torch.float32)
    if grey:
        x = x.mean(dim=0, keepdim=True)
    elif x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    x = torch.nan_to_num(x, nan=0.0)
    v = torch.round(torch.clamp(x * 255.0, 0.0, 255.0)).to(torch.uint8)
    return np.ascontiguousarray(v.permute(1, 2, 0).numpy())
