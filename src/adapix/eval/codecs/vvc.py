"""H.266/VVC intra through ffmpeg (vvenc encoder, native vvc decoder), with the numpy colour
conversion, the ffmpeg discovery and the size SEI of odd-sized images."""

from __future__ import annotations

import functools
import shutil
import subprocess
from typing import Any

import numpy as np

from .base import Codec, check_rgb

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
