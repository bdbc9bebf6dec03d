"""Image codecs under evaluation, behind one small interface.

Every codec turns an 8-bit RGB image (``numpy.ndarray``, ``uint8``, ``H x W x 3``) into the bytes of a
real file (JPEG, WebP, AVIF, HEIC, JPEG XL, a JPEG 2000 codestream, a raw H.266 bitstream, an Adapix
``.apx`` stream) and back; rates are always computed from those bytes, headers included.

A codec whose library is missing does not raise on import: :meth:`Codec.available` returns a one-line
reason, and the runner skips it. ``CODECS`` maps codec names to factories; :func:`get_codecs` turns a
list of names (or ``"all"``) into codec instances.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import io
import shutil
import subprocess
from typing import Any, Callable, Iterable

import numpy as np

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
    "WEIGHTS_ENV",
    "CODECS",
    "codec_names",
    "get_codecs",
    "check_rgb",
]


def check_rgb(rgb: np.ndarray) -> np.ndarray:
    """Validate an input image: ``uint8``, ``H x W x 3``, at least 1x1. Returns it C-contiguous."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"expected a uint8 HxWx3 RGB image, got {rgb.dtype} {rgb.shape}")
    return np.ascontiguousarray(rgb)


def _to_rgb_array(img: Any) -> np.ndarray:
    """PIL image (any mode) -> uint8 HxWx3."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()


class Codec:
    """Base class (and de-facto protocol) of an evaluated codec.

    Subclasses set ``name``, ``description`` and ``extension`` and implement :meth:`params`,
    :meth:`encode` and :meth:`decode`; they override :meth:`available` when they depend on an optional
    library or binary. ``param`` values must be JSON-serialisable (they key the result cache).
    """

    name: str = "codec"
    description: str = ""
    extension: str = "bin"
    param_name: str = "param"
    revision: int = 1  # bump when the codec's pipeline changes, to invalidate cached results

    def available(self) -> str | None:
        """``None`` if the codec can run here, else a one-line reason why it is skipped."""
        return None

    def params(self) -> list:
        """The quality parameters of the sweep, ordered from lowest to highest rate."""
        raise NotImplementedError

    def encode(self, rgb: np.ndarray, param: Any) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> np.ndarray:
        raise NotImplementedError

    def version(self) -> str:
        """Versions of the libraries involved; part of the result-cache fingerprint."""
        return ""

    def fingerprint(self) -> str:
        """Identifies the exact configuration: cached results with another fingerprint are recomputed."""
        return f"{self.name}|r{self.revision}|{self.description}|{self.version()}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


# --------------------------------------------------------------------------------------- Pillow codecs


def _pil_version() -> str:
    import PIL

    return f"Pillow {PIL.__version__}"


class PillowJPEG(Codec):
    """Baseline JPEG (libjpeg(-turbo) through Pillow), optimised Huffman tables, standard quant tables."""

    extension = "jpg"
    param_name = "quality"

    def __init__(self, subsampling: str = "4:2:0"):
        if subsampling not in ("4:2:0", "4:4:4"):
            raise ValueError(f"unsupported JPEG subsampling {subsampling!r}")
        self.subsampling = subsampling
        self.name = "jpeg420" if subsampling == "4:2:0" else "jpeg444"
        self.description = f"JPEG (Pillow/libjpeg, YCbCr {subsampling}, optimize=True), param = quality 1-95"

    def available(self) -> str | None:
        from PIL import features

        return None if features.check("jpg") else "Pillow was built without JPEG support"

    def params(self) -> list:
        if self.subsampling == "4:4:4":
            return [2, 5, 10, 18, 30, 50, 70, 85]
        return [2, 5, 10, 20, 35, 55, 75, 88]

    def encode(self, rgb: np.ndarray, param: Any) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(check_rgb(rgb), "RGB").save(
            buf, "JPEG", quality=int(param), subsampling=0 if self.subsampling == "4:4:4" else 2, optimize=True
        )
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return _to_rgb_array(img)

    def version(self) -> str:
        from PIL import features

        return f"{_pil_version()} libjpeg {features.version('jpg')}"


class PillowWebP(Codec):
    """Lossy WebP (libwebp through Pillow): VP8 intra, always YCbCr 4:2:0."""

    name = "webp"
    description = "WebP lossy (Pillow/libwebp, YCbCr 4:2:0, method=6), param = quality 0-100"
    extension = "webp"
    param_name = "quality"

    def available(self) -> str | None:
        from PIL import features

        return None if features.check("webp") else "Pillow was built without WebP support"

    def params(self) -> list:
        return [0, 5, 15, 30, 50, 70, 85, 92]

    def encode(self, rgb: np.ndarray, param: Any) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(check_rgb(rgb), "RGB").save(buf, "WEBP", quality=int(param), method=6, lossless=False)
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return _to_rgb_array(img)

    def version(self) -> str:
        from PIL import features

        return f"{_pil_version()} libwebp {features.version('webp')}"


class PillowAVIF(Codec):
    """AVIF (libavif through Pillow's AVIF plugin, AV1 intra via the encoder libavif picks)."""

    extension = "avif"
    param_name = "quality"

    def __init__(self, subsampling: str = "4:2:0", speed: int = 6):
        if subsampling not in ("4:2:0", "4:4:4"):
            raise ValueError(f"unsupported AVIF subsampling {subsampling!r}")
        self.subsampling = subsampling
        self.speed = int(speed)
        self.name = "avif" if subsampling == "4:2:0" else "avif444"
        self.description = (
            f"AVIF (Pillow/libavif, YCbCr {subsampling} 8-bit full range, speed={self.speed}), param = quality 0-100"
        )

    def available(self) -> str | None:
        from PIL import features

        try:
            ok = features.check("avif")
        except Exception as exc:  # pragma: no cover - very old Pillow
            return f"Pillow cannot check AVIF support ({exc})"
        return None if ok else "Pillow was built without AVIF support (needs Pillow >= 11.2 with libavif)"

    def params(self) -> list:
        return [2, 10, 25, 40, 55, 65, 75, 85]

    def encode(self, rgb: np.ndarray, param: Any) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(check_rgb(rgb), "RGB").save(
            buf, "AVIF", quality=int(param), subsampling=self.subsampling, speed=self.speed, max_threads=1
        )
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return _to_rgb_array(img)

    def version(self) -> str:
        from PIL import features

        return f"{_pil_version()} libavif {features.version('avif')}"


# ------------------------------------------------------------------------------------------ pillow-heif


class HeifHEIC(Codec):
    """HEIC (HEVC intra by x265 through libheif/pillow-heif; decoded by libde265)."""

    extension = "heic"
    param_name = "quality"

    def __init__(self, chroma: str = "420"):
        if chroma not in ("420", "444"):
            raise ValueError(f"unsupported HEIC chroma {chroma!r}")
        self.chroma = chroma
        self.name = "heic" if chroma == "420" else "heic444"
        sub = "4:2:0" if chroma == "420" else "4:4:4"
        self.description = f"HEIC (pillow-heif/libheif, x265, YCbCr {sub} 8-bit), param = quality 0-100"

    def available(self) -> str | None:
        try:
            import pillow_heif
        except ImportError as exc:
            return f"pillow-heif is not installed ({exc})"
        info = pillow_heif.libheif_info()
        if "x265" not in str(info.get("HEIF", "")) and "x265" not in info.get("encoders", {}):
            return "pillow-heif has no x265 HEVC encoder"
        return None

    def params(self) -> list:
        return [2, 10, 20, 30, 40, 50, 58, 65]

    def encode(self, rgb: np.ndarray, param: Any) -> bytes:
        import pillow_heif

        rgb = check_rgb(rgb)
        buf = io.BytesIO()
        pillow_heif.encode(
            "RGB", (rgb.shape[1], rgb.shape[0]), rgb.tobytes(), buf, quality=int(param), chroma=self.chroma
        )
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        import pillow_heif

        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
        return _to_rgb_array(heif.to_pillow())

    def version(self) -> str:
        import pillow_heif

        info = pillow_heif.libheif_info()
        return f"pillow-heif {pillow_heif.__version__} libheif {info.get('libheif')} {info.get('HEIF')}"


# ------------------------------------------------------------------------------------------ imagecodecs


def _imagecodecs_reason(attr: str, label: str) -> str | None:
    try:
        import imagecodecs
    except ImportError as exc:
        return f"imagecodecs is not installed ({exc})"
    codec = getattr(imagecodecs, attr, None)
    if codec is None or not getattr(codec, "available", False):
        return f"imagecodecs was built without {label}"
    return None


class ImagecodecsJXL(Codec):
    """JPEG XL (libjxl through imagecodecs), VarDCT lossy with a butteraugli distance target."""

    name = "jxl"
    description = "JPEG XL (imagecodecs/libjxl, VarDCT, effort=7), param = butteraugli distance (lower is better)"
    extension = "jxl"
    param_name = "distance"

    def available(self) -> str | None:
        return _imagecodecs_reason("JPEGXL", "JPEG XL (libjxl)")

    def params(self) -> list:
        return [25.0, 15.0, 10.0, 6.0, 4.0, 2.5, 1.6, 1.1, 0.8]

    def encode(self, rgb: np.ndarray, param: Any) -> bytes:
        import imagecodecs

        return bytes(imagecodecs.jpegxl_encode(check_rgb(rgb), distance=float(param), effort=7, numthreads=1))

    def decode(self, data: bytes) -> np.ndarray:
        import imagecodecs

        out = np.asarray(imagecodecs.jpegxl_decode(data, numthreads=1))
        return _normalise_decoded(out)

    def version(self) -> str:
        import imagecodecs

        return f"imagecodecs {imagecodecs.__version__} libjxl {imagecodecs.jpegxl_version()}"


class ImagecodecsJ2K(Codec):
    """JPEG 2000 (OpenJPEG through imagecodecs), irreversible 9/7 + ICT, raw J2K codestream."""

    name = "jpeg2000"
    description = (
        "JPEG 2000 (imagecodecs/OpenJPEG, 9/7 wavelet + ICT, raw .j2k codestream), param = target PSNR in dB"
    )
    extension = "j2k"
    param_name = "target_psnr"

    def available(self) -> str | None:
        return _imagecodecs_reason("JPEG2K", "JPEG 2000 (OpenJPEG)")

    def params(self) -> list:
        return [22, 24, 26, 28, 30, 32, 35, 38, 41]

    def encode(self, rgb: np.ndarray, param: Any) -> bytes:
        import imagecodecs

        # imagecodecs maps ``level`` to OpenJPEG's fixed-quality mode (target PSNR in dB); level=None
        # would be lossless, so the parameter is always given.
        return bytes(
            imagecodecs.jpeg2k_encode(
                check_rgb(rgb), level=float(param), codecformat="j2k", reversible=False, numthreads=1
            )
        )

    def decode(self, data: bytes) -> np.ndarray:
        import imagecodecs

        return _normalise_decoded(np.asarray(imagecodecs.jpeg2k_decode(data, numthreads=1)))

    def version(self) -> str:
        import imagecodecs

        return f"imagecodecs {imagecodecs.__version__} openjpeg {imagecodecs.jpeg2k_version()}"


def _normalise_decoded(out: np.ndarray) -> np.ndarray:
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    if out.shape[2] == 4:
        out = out[:, :, :3]
    if out.dtype != np.uint8:
        raise ValueError(f"decoder returned {out.dtype}, expected uint8")
    return np.ascontiguousarray(out)


# ------------------------------------------------------------------------------------- VVC via ffmpeg

# BT.601 full-range ("JFIF") RGB <-> Y'CbCr, scaled to 10 bits. The colour conversion and the chroma
# resampling are done here in numpy (not by ffmpeg's swscale), so encoder and decoder are exactly
# inverse apart from the codec's own loss, the 10-bit rounding and the 4:2:0 resampling.
_RGB2YCC = np.array(
    [[0.299, 0.587, 0.114], [-0.168735892, -0.331264108, 0.5], [0.5, -0.418687589, -0.081312411]],
    dtype=np.float64,
)
_YCC2RGB = np.linalg.inv(_RGB2YCC)


def _rgb_to_yuv420p10(rgb: np.ndarray, min_size: int = 0) -> tuple[bytes, int, int]:
    """uint8 RGB (H x W) -> yuv420p10le planes of the image edge-padded to even size (and to at least
    ``min_size`` in each dimension)."""
    h, w = rgb.shape[:2]
    ph, pw = max(h + (h & 1), min_size), max(w + (w & 1), min_size)
    if (ph, pw) != (h, w):
        rgb = np.pad(rgb, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    x = rgb.astype(np.float64) / 255.0
    ycc = x @ _RGB2YCC.T
    # H.273 full range, 10 bits: Y = 1023 E_Y, Cb/Cr = 1023 E_C + 512
    y = ycc[..., 0] * 1023.0
    # 2x2 box filter: chroma samples sited at the centre of each 2x2 block
    c = ycc[..., 1:].reshape(ph // 2, 2, pw // 2, 2, 2).mean(axis=(1, 3)) * 1023.0 + 512.0
    planes = [y, c[..., 0], c[..., 1]]
    out = b"".join(np.clip(np.rint(p), 0, 1023).astype("<u2").tobytes() for p in planes)
    return out, pw, ph


def _upsample2(c: np.ndarray) -> np.ndarray:
    """Bilinear 2x upsampling of a centre-sited chroma plane (weights 3/4, 1/4; edges replicated)."""
    def up_axis(a: np.ndarray, axis: int) -> np.ndarray:
        a = np.moveaxis(a, axis, 0)
        prev = np.concatenate([a[:1], a[:-1]], axis=0)
        nxt = np.concatenate([a[1:], a[-1:]], axis=0)
        even = 0.75 * a + 0.25 * prev
        odd = 0.75 * a + 0.25 * nxt
        out = np.empty((a.shape[0] * 2,) + a.shape[1:], dtype=a.dtype)
        out[0::2] = even
        out[1::2] = odd
        return np.moveaxis(out, 0, axis)

    return up_axis(up_axis(c, 0), 1)


def _yuv420p10_to_rgb(buf: bytes, pw: int, ph: int, w: int, h: int) -> np.ndarray:
    n_y = pw * ph
    n_c = (pw // 2) * (ph // 2)
    arr = np.frombuffer(buf, dtype="<u2", count=n_y + 2 * n_c).astype(np.float64)
    y = arr[:n_y].reshape(ph, pw) / 1023.0
    cb = (_upsample2(arr[n_y : n_y + n_c].reshape(ph // 2, pw // 2)) - 512.0) / 1023.0
    cr = (_upsample2(arr[n_y + n_c :].reshape(ph // 2, pw // 2)) - 512.0) / 1023.0
    rgb = np.stack([y, cb, cr], axis=-1) @ _YCC2RGB.T
    rgb = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb[:h, :w])


@functools.lru_cache(maxsize=None)
def _ffmpeg_exe() -> tuple[str | None, str | None]:
    """(path, None) of an ffmpeg binary, or (None, reason)."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe(), None
    except ImportError:
        pass
    except Exception as exc:  # imageio-ffmpeg installed but has no binary for this platform
        exe = shutil.which("ffmpeg")
        if exe:
            return exe, None
        return None, f"imageio-ffmpeg has no ffmpeg binary ({exc})"
    exe = shutil.which("ffmpeg")
    if exe:
        return exe, None
    return None, "no ffmpeg binary (install imageio-ffmpeg or put ffmpeg on PATH)"


@functools.lru_cache(maxsize=None)
def _ffmpeg_lists(exe: str) -> tuple[str, str, str]:
    def run(flag: str) -> str:
        return subprocess.run(
            [exe, "-hide_banner", flag], capture_output=True, text=True, timeout=60, check=False
        ).stdout

    version = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True, timeout=60).stdout
    return run("-encoders"), run("-decoders"), version.splitlines()[0] if version else ""


def _lists_codec(listing: str, codec: str) -> bool:
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] == codec:
            return True
    return False


# user_data_unregistered SEI carrying the true size of odd-sized images (4:2:0 VVC cannot code odd
# sizes: the conformance window counts in chroma samples). The UUID and the ASCII payload contain no
# zero bytes, so no emulation prevention is needed.
_SIZE_SEI_UUID = bytes.fromhex("61646170697876766373697a65763031")  # "adapixvvcsizev01"


def _size_sei(w: int, h: int) -> bytes:
    payload = _SIZE_SEI_UUID + f"{w}x{h}".encode("ascii")
    assert len(payload) < 255
    # start code, NAL header (type 23 = prefix SEI, layer 0, tid+1 = 1), payloadType 5, size, payload,
    # rbsp trailing bits
    return b"\x00\x00\x01" + bytes([0x00, (23 << 3) | 1, 5, len(payload)]) + payload + b"\x80"


def _nal_units(data: bytes) -> list[tuple[int, int, int]]:
    """(start of the start code, start of the NAL header, end) of each NAL unit of an Annex-B stream."""
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        sc = i - 1 if i > 0 and data[i - 1] == 0 else i
        starts.append((sc, i + 3))
        i = data.find(b"\x00\x00\x01", i + 3)
    out = []
    for k, (sc, hdr) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(data)
        out.append((sc, hdr, end))
    return out


def _vvc_nal_type(data: bytes, hdr: int) -> int:
    return (data[hdr + 1] >> 3) & 0x1F if hdr + 1 < len(data) else -1


def _insert_size_sei(bitstream: bytes, w: int, h: int) -> bytes:
    """Insert the size SEI right before the first VCL NAL unit (types 0..12)."""
    for sc, hdr, _ in _nal_units(bitstream):
        if 0 <= _vvc_nal_type(bitstream, hdr) <= 12:
            return bitstream[:sc] + _size_sei(w, h) + bitstream[sc:]
    raise RuntimeError("no VCL NAL unit in the VVC bitstream")


def _find_size_sei(data: bytes) -> tuple[int, int] | None:
    for _, hdr, end in _nal_units(data):
        if _vvc_nal_type(data, hdr) != 23:
            continue
        body = data[hdr + 2 : end]
        if len(body) >= 2 + 16 and body[0] == 5 and body[2 : 2 + 16] == _SIZE_SEI_UUID:
            text = body[2 + 16 : 2 + body[1]].decode("ascii", "replace")
            try:
                w, h = (int(v) for v in text.split("x"))
            except ValueError:
                continue
            return w, h
    return None


_VVC_MIN_SIZE = 32  # vvenc (via ffmpeg) rejects some pictures smaller than this, e.g. 16x16


class FFmpegVVC(Codec):
    """H.266/VVC intra (one frame) by vvenc through a static ffmpeg, decoded by ffmpeg's native vvc.

    libvvenc in ffmpeg takes ``yuv420p10le`` only, so the image is converted here (numpy) to BT.601
    full-range Y'CbCr 4:2:0 at 10 bits (2x2 box-filtered chroma), piped raw into
    ``ffmpeg -f rawvideo -pix_fmt yuv420p10le -i - -c:v libvvenc -qp Q -qpa 0 -f vvc -``; the file is
    the raw ``.266`` Annex-B bitstream from stdout (AUD, SPS, PPS, APS, one IDR slice). Decoding pipes
    it into ``ffmpeg -f vvc -i - -f rawvideo -pix_fmt yuv420p10le -`` and converts back (bilinear
    chroma upsampling). The size comes from the SPS; odd-sized images are edge-padded to even size and
    carry their true size in a ~30-byte user-data SEI (counted in the rate); so do images smaller than
    32 pixels in a dimension, which are padded to 32 (vvenc rejects some tiny pictures).
    """

    name = "vvc"
    extension = "266"
    param_name = "qp"
    revision = 2  # 2: chroma offset 512 (H.273 full range)

    def __init__(self, preset: str = "medium", threads: int = 1):
        self.preset = preset
        self.threads = int(threads)
        self.description = (
            f"H.266/VVC intra (vvenc preset {preset} via ffmpeg libvvenc, QP adaptation off; ffmpeg native "
            "vvc decoder), YCbCr 4:2:0 10-bit (BT.601 full range, converted in numpy), raw .266 bitstream; "
            "param = QP"
        )

    def available(self) -> str | None:
        exe, reason = _ffmpeg_exe()
        if exe is None:
            return reason
        try:
            encoders, decoders, _ = _ffmpeg_lists(exe)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"cannot run ffmpeg {exe} ({exc})"
        if not _lists_codec(encoders, "libvvenc"):
            return f"ffmpeg ({exe}) has no libvvenc encoder"
        if not _lists_codec(decoders, "vvc"):
            return f"ffmpeg ({exe}) has no vvc decoder"
        return None

    def params(self) -> list:
        return [50, 45, 41, 37, 33, 29, 25, 22]

    @staticmethod
    def _ffmpeg(args: list[str], data: bytes, what: str) -> subprocess.CompletedProcess:
        exe, reason = _ffmpeg_exe()
        if exe is None:
            raise RuntimeError(reason)
        proc = subprocess.run([exe, "-hide_banner", "-nostdin", *args], input=data, capture_output=True, check=False)
        if proc.returncode != 0 or not proc.stdout:
            err = [ln for ln in proc.stderr.decode("utf-8", "replace").strip().splitlines() if ln.strip()]
            raise RuntimeError(f"ffmpeg {what} failed (exit {proc.returncode}): {err[-1] if err else 'no output'}")
        return proc

    def encode(self, rgb: np.ndarray, param: Any) -> bytes:
        rgb = check_rgb(rgb)
        qp = int(param)
        if not 0 <= qp <= 63:
            raise ValueError(f"VVC QP must be in 0..63, got {qp}")
        h, w = rgb.shape[:2]
        yuv, pw, ph = _rgb_to_yuv420p10(rgb, min_size=_VVC_MIN_SIZE)
        args = [
            "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "yuv420p10le", "-s", f"{pw}x{ph}", "-r", "1", "-i", "-",
            "-frames:v", "1",
            "-c:v", "libvvenc", "-preset", self.preset, "-qp", str(qp), "-qpa", "0",
            "-threads", str(self.threads),
            # signal full range in the VUI only; ffmpeg's -color_range pc would insert a range conversion
            "-vvenc-params", "VideoFullRange=1",
            "-f", "vvc", "-",
        ]
        out = self._ffmpeg(args, yuv, "libvvenc encoding").stdout
        if (pw, ph) != (w, h):
            out = _insert_size_sei(out, w, h)
        return out

    def decode(self, data: bytes) -> np.ndarray:
        args = ["-loglevel", "info", "-f", "vvc", "-i", "-", "-frames:v", "1",
                "-f", "rawvideo", "-pix_fmt", "yuv420p10le", "-"]
        proc = self._ffmpeg(args, data, "vvc decoding")
        pw, ph = _size_from_ffmpeg_log(proc.stderr.decode("utf-8", "replace"))
        if pw % 2 or ph % 2:
            raise RuntimeError(f"unexpected odd decoded size {pw}x{ph}")
        expected = 2 * (pw * ph + 2 * (pw // 2) * (ph // 2))
        if len(proc.stdout) < expected:
            raise RuntimeError(f"decoded frame has {len(proc.stdout)} bytes, expected {expected} for {pw}x{ph}")
        w, h = _find_size_sei(data) or (pw, ph)
        if not (0 < w <= pw and 0 < h <= ph):
            raise RuntimeError(f"size SEI {w}x{h} does not match the decoded {pw}x{ph}")
        return _yuv420p10_to_rgb(proc.stdout[:expected], pw, ph, w, h)

    def version(self) -> str:
        exe, _ = _ffmpeg_exe()
        if exe is None:
            return ""
        try:
            return _ffmpeg_lists(exe)[2]
        except (OSError, subprocess.SubprocessError):
            return ""


def _size_from_ffmpeg_log(log: str) -> tuple[int, int]:
    """Picture size of the decoded stream from ffmpeg's ``Stream #0:0: Video: vvc ..., WxH`` line."""
    import re

    for line in log.splitlines():
        if "Video:" in line:
            m = re.search(r"\b(\d{1,6})x(\d{1,6})\b", line)
            if m:
                return int(m.group(1)), int(m.group(2))
    raise RuntimeError("cannot find the picture size in ffmpeg's output")


# ---------------------------------------------------------------------------------------------- Adapix


WEIGHTS_ENV = "ADAPIX_EVAL_WEIGHTS"
"""Environment variable with a weights file for :class:`AdapixCodec` (default: the shipped model).
An environment variable, so that worker processes see it too (``adapix eval --adapix-weights``)."""


class AdapixCodec(Codec):
    """The Adapix codec, through ``adapix.api.Codec`` (imported lazily: it is written in parallel).

    API used: ``adapix.api.Codec(weights)`` with ``encode(image: PIL.Image.Image, quality: float,
    profile: str) -> bytes`` and ``decode(data: bytes) -> PIL.Image.Image``; quality 0..100, higher is
    better. ``profile=None`` uses the API's default profile. ``weights=None`` uses ``$ADAPIX_EVAL_WEIGHTS``
    if set, else the shipped model. The model identity (``model_id`` and the weights hash) is part of
    the cache fingerprint, so results of other weights are not reused.
    """

    extension = "apx"
    param_name = "quality"

    def __init__(self, profile: str | None = None, weights: str | None = None):
        self.profile = profile
        self.weights = weights
        self.name = "adapix" if profile is None else f"adapix-{profile}"
        self.description = (
            f"Adapix learned codec (adapix.api, profile {profile or 'default'}), param = quality 0-100"
        )
        self._api_codec = None
        self._load_error: str | None = None

    def _module(self):
        return importlib.import_module("adapix.api")

    def _weights(self) -> str | None:
        import os

        return self.weights or os.environ.get(WEIGHTS_ENV) or None

    def available(self) -> str | None:
        try:
            mod = self._module()
        except Exception as exc:  # ImportError, or an error inside a half-written module
            return f"adapix.api cannot be imported yet ({type(exc).__name__}: {exc})"
        if not hasattr(mod, "Codec"):
            return "adapix.api has no Codec class yet"
        try:
            self._codec()
        except Exception as exc:  # e.g. no weights file yet
            msg = " ".join(str(exc).split())
            return f"the Adapix model cannot be loaded ({type(exc).__name__}: {msg})"
        return None

    def params(self) -> list:
        return [5, 15, 25, 35, 50, 65, 80, 95]

    def _codec(self):
        if self._api_codec is None:
            weights = self._weights()
            cls = self._module().Codec
            self._api_codec = cls(weights) if weights else cls()
        return self._api_codec

    def _profile_kwargs(self) -> dict:
        if self.profile is not None:
            return {"profile": self.profile}
        try:
            sig = inspect.signature(self._codec().encode)
            p = sig.parameters.get("profile")
            if p is not None and p.default is inspect.Parameter.empty:
                return {"profile": "fast"}
        except (TypeError, ValueError):
            pass
        return {}

    def encode(self, rgb: np.ndarray, param: Any) -> bytes:
        from PIL import Image

        img = Image.fromarray(check_rgb(rgb), "RGB")
        return bytes(self._codec().encode(img, quality=float(param), **self._profile_kwargs()))

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


# -------------------------------------------------------------------------------------------- registry

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
"""Codec name -> factory. ``adapix:<profile>`` names are also accepted by :func:`get_codecs`."""

ALIASES = {"jpeg": "jpeg420", "jpg": "jpeg420", "j2k": "jpeg2000", "jp2": "jpeg2000", "jpegxl": "jxl",
           "h266": "vvc", "heif": "heic"}


def codec_names() -> list[str]:
    return list(CODECS)


def _make(name: str) -> Codec:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key in CODECS:
        return CODECS[key]()
    if key.startswith("adapix:") or key.startswith("adapix-"):
        profile = name.strip()[len("adapix:"):]
        if not profile:
            raise ValueError(f"empty Adapix profile in codec name {name!r}")
        return AdapixCodec(profile)
    raise ValueError(f"unknown codec {name!r} (known: {', '.join(CODECS)}, adapix:<profile>)")


def get_codecs(names: str | Iterable[str] | None = None) -> list[Codec]:
    """Codec instances for names (a list, or a comma-separated string); ``None``/``"all"`` = every codec.

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
            codec = _make(item)
            if codec.name not in seen:
                seen.add(codec.name)
                out.append(codec)
    if not out:
        raise ValueError("no codec given")
    return out


def get_codec(name: str) -> Codec:
    return _make(name)
