"""Result records, the common JSON curve format, the per-image CSV and published reference curves.

The JSON format is the one of CompressAI's ``results/image/<dataset>/*.json`` (and of
``/work/shared/reference``)::

    {"name": ..., "description": ...,
     "results": {"bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...],
                 "encoding_time": [...], "decoding_time": [...]}}

Each point is the dataset mean of per-image values. Files written here add a ``"meta"`` object
(parameters of the points, number of images, codec fingerprint); readers ignore keys they do not
know. Reference files may lack ``ms-ssim-rgb`` (or give ``ms-ssim-db-rgb`` instead) and the times.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Sequence

__all__ = [
    "Measurement",
    "Curve",
    "aggregate",
    "write_curve_json",
    "read_curve_json",
    "write_per_image_csv",
    "load_reference_curves",
    "append_jsonl",
    "read_jsonl",
    "param_key",
]


def param_key(param: Any) -> str:
    """Canonical string of a codec parameter (JSON), used to match cached results."""
    return json.dumps(param, sort_keys=True)


def _finite_or_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _float_or_nan(x: Any) -> float:
    if x is None:
        return math.nan
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


@dataclass
class Measurement:
    """One codec at one parameter on one image."""

    codec: str
    param: Any
    image: str
    bpp: float
    psnr: float
    ms_ssim: float
    enc_s: float
    dec_s: float
    width: int = 0
    height: int = 0
    nbytes: int = 0
    image_sha: str = ""
    fingerprint: str = ""

    def to_dict(self) -> dict:
        """JSON-safe dict (``inf``/``nan`` written as strings so the JSONL stays standard JSON)."""
        d = asdict(self)
        for k in ("bpp", "psnr", "ms_ssim", "enc_s", "dec_s"):
            v = d[k]
            if isinstance(v, float) and not math.isfinite(v):
                d[k] = "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Measurement":
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for k in ("bpp", "psnr", "ms_ssim", "enc_s", "dec_s"):
            kw[k] = _float_or_nan(kw.get(k))
        return cls(**kw)


@dataclass
class Curve:
    """A rate-distortion curve: measured here (``source="measured"``) or published (``"reference"``)."""

    name: str
    description: str = ""
    bpp: list[float] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)
    ms_ssim: list[float] = field(default_factory=list)
    encoding_time: list[float] = field(default_factory=list)
    decoding_time: list[float] = field(default_factory=list)
    params: list = field(default_factory=list)
    source: str = "measured"
    path: str | None = None
    n_images: int = 0
    label: str = ""

    def __post_init__(self) -> None:
        n = len(self.bpp)
        for name in ("psnr", "ms_ssim", "encoding_time", "decoding_time"):
            values = getattr(self, name)
            if values and len(values) != n:
                raise ValueError(f"curve {self.name!r}: {name} has {len(values)} points, bpp has {n}")
        if not self.label:
            self.label = self.name

    def __len__(self) -> int:
        return len(self.bpp)

    @property
    def ms_ssim_db(self) -> list[float]:
        from .metrics import ms_ssim_db

        return [ms_ssim_db(v) for v in self.ms_ssim]

    def has_ms_ssim(self) -> bool:
        return any(isinstance(v, (int, float)) and math.isfinite(v) for v in self.ms_ssim)

    def to_json_dict(self) -> dict:
        results: dict[str, list] = {
            "bpp": [_finite_or_none(v) for v in self.bpp],
            "psnr-rgb": [_finite_or_none(v) for v in self.psnr],
            "ms-ssim-rgb": [_finite_or_none(v) for v in self.ms_ssim] if self.ms_ssim else [],
            "encoding_time": [_finite_or_none(v) for v in self.encoding_time],
            "decoding_time": [_finite_or_none(v) for v in self.decoding_time],
        }
        out: dict[str, Any] = {"name": self.name, "description": self.description, "results": results}
        meta: dict[str, Any] = {}
        if self.params:
            meta["params"] = list(self.params)
        if self.n_images:
            meta["n_images"] = self.n_images
        if meta:
            out["meta"] = meta
        return out

    @classmethod
    def from_json_dict(cls, d: dict, *, source: str = "reference", path: str | None = None,
                       label: str = "") -> "Curve":
        """Parse the common format; tolerant of extra keys and of missing MS-SSIM or times."""
        if not isinstance(d, dict) or not isinstance(d.get("results"), dict):
            raise ValueError("no 'results' object")
        r = d["results"]
        if "bpp" not in r or "psnr-rgb" not in r:
            raise ValueError("'results' lacks 'bpp' or 'psnr-rgb'")
        bpp = [_float_or_nan(v) for v in r["bpp"]]
        n = len(bpp)

        def series(key: str) -> list[float]:
            values = r.get(key)
            if not isinstance(values, list) or len(values) != n:
                if values is not None and isinstance(values, list) and values:
                    warnings.warn(f"{path or d.get('name')}: '{key}' has {len(values)} points, bpp has {n}; ignored")
                return []
            return [_float_or_nan(v) for v in values]

        psnr = series("psnr-rgb")
        if len(psnr) != n:
            raise ValueError(f"'psnr-rgb' does not have {n} points")
        ms = series("ms-ssim-rgb")
        if not ms:
            ms_db = series("ms-ssim-db-rgb")
            if ms_db:
                ms = [1.0 - 10.0 ** (-v / 10.0) if math.isfinite(v) else math.nan for v in ms_db]
        meta = d.get("meta") if isinstance(d.get("meta"), dict) else {}
        return cls(
            name=str(d.get("name") or label or "unnamed"),
            description=str(d.get("description") or ""),
            bpp=bpp,
            psnr=psnr,
            ms_ssim=ms,
            encoding_time=series("encoding_time"),
            decoding_time=series("decoding_time"),
            params=list(meta.get("params", [])) if isinstance(meta.get("params", []), list) else [],
            source=source,
            path=path,
            n_images=int(meta.get("n_images", 0) or 0) if isinstance(meta.get("n_images", 0), (int, float)) else 0,
            label=label,
        )


def _mean(values: Sequence[float]) -> float:
    vals = [float(v) for v in values]
    if not vals:
        return math.nan
    if any(math.isnan(v) for v in vals):
        return math.nan
    return float(sum(vals) / len(vals))


def aggregate(
    measurements: Iterable[Measurement],
    name: str,
    description: str = "",
    params: Sequence[Any] | None = None,
    images: Sequence[str] | None = None,
) -> tuple[Curve, list[str]]:
    """Dataset means per parameter -> a :class:`Curve` (points sorted by bpp), plus warnings.

    A point is kept only if every image (``images``, default: all images seen) has a result for
    that parameter, so all points average the same image set. ``params`` restricts and orders the
    parameters (default: in order of first appearance).
    """
    ms = [m for m in measurements if m.codec == name]
    if images is None:
        images = sorted({m.image for m in ms})
    image_set = set(images)
    by_param: dict[str, dict[str, Measurement]] = {}
    order: list[str] = []
    values: dict[str, Any] = {}
    for m in ms:
        k = param_key(m.param)
        if k not in by_param:
            by_param[k] = {}
            order.append(k)
            values[k] = m.param
        if m.image in image_set:
            by_param[k][m.image] = m
    if params is not None:
        order = [param_key(p) for p in params]
        values.update({param_key(p): p for p in params})
    warn: list[str] = []
    points = []
    for k in order:
        got = by_param.get(k, {})
        missing = image_set - set(got)
        if missing:
            if got:
                warn.append(f"{name}: param {values[k]!r} dropped, {len(missing)}/{len(image_set)} images have no result")
            else:
                warn.append(f"{name}: param {values[k]!r} dropped, no result")
            continue
        rows = [got[i] for i in images]
        points.append((
            _mean([r.bpp for r in rows]),
            _mean([r.psnr for r in rows]),
            _mean([r.ms_ssim for r in rows]),
            _mean([r.enc_s for r in rows]),
            _mean([r.dec_s for r in rows]),
            values[k],
        ))
    points.sort(key=lambda p: (p[0], p[1]))
    curve = Curve(
        name=name,
        description=description,
        bpp=[p[0] for p in points],
        psnr=[p[1] for p in points],
        ms_ssim=[p[2] for p in points],
        encoding_time=[p[3] for p in points],
        decoding_time=[p[4] for p in points],
        params=[p[5] for p in points],
        source="measured",
        n_images=len(image_set),
    )
    return curve, warn


def write_curve_json(curve: Curve, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(curve.to_json_dict(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_curve_json(path: str | Path, source: str = "reference") -> Curve:
    path = Path(path)
    with path.open("r", encoding="utf-8") as f:
        d = json.load(f)
    return Curve.from_json_dict(d, source=source, path=str(path), label=path.stem)


CSV_COLUMNS = ["codec", "param", "image", "width", "height", "bytes", "bpp", "psnr", "ms_ssim", "ms_ssim_db",
               "enc_s", "dec_s"]


def write_per_image_csv(measurements: Iterable[Measurement], path: str | Path) -> Path:
    from .metrics import ms_ssim_db

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = sorted(measurements, key=lambda m: (m.codec, m.bpp if math.isfinite(m.bpp) else 0.0, m.image))
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for m in rows:
            w.writerow([
                m.codec, param_key(m.param), m.image, m.width, m.height, m.nbytes,
                f"{m.bpp:.6f}", f"{m.psnr:.4f}", f"{m.ms_ssim:.6f}", f"{ms_ssim_db(m.ms_ssim):.4f}",
                f"{m.enc_s:.4f}", f"{m.dec_s:.4f}",
            ])
    return path


def load_reference_curves(directory: str | Path | None) -> tuple[dict[str, Curve], list[str]]:
    """All ``*.json`` curves of a directory, keyed by file stem (e.g. ``"vtm"``), plus warnings for
    files that could not be read. A missing directory gives no curves and one warning."""
    if directory is None:
        return {}, []
    directory = Path(directory)
    if not directory.is_dir():
        return {}, [f"reference directory {directory} does not exist"]
    curves: dict[str, Curve] = {}
    warn: list[str] = []
    for p in sorted(directory.glob("*.json")):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                curve = read_curve_json(p, source="reference")
            warn.extend(str(w.message) for w in caught)
        except (OSError, ValueError, TypeError) as exc:
            warn.append(f"reference {p.name} skipped: {exc}")
            continue
        if len(curve) == 0:
            warn.append(f"reference {p.name} skipped: no points")
            continue
        curves[p.stem] = curve
    return curves, warn


def append_jsonl(path: str | Path, records: Iterable[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, sort_keys=True) + "\n")
        f.flush()


def read_jsonl(path: str | Path) -> list[dict]:
    """Records of a JSONL file; a truncated or corrupt line (e.g. from an interrupted run) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    with path.open("r", encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
    return out
