"""Constants, the configuration and result records of the benchmark, and size arguments."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((768, 512), (1920, 1080))
DEFAULT_RUNS = 5
DEFAULT_THREADS = 2
DEFAULT_MBT_QUALITY = 6
MBT_PAD = 64  # mbt2018 needs multiples of 64 (two stride-2 stages after four in g_a)
COMPRESSAI_VERSION = "1.2.8"
COMPRESSAI_INSTALL = f"pip install --no-deps compressai=={COMPRESSAI_VERSION}"
SYNTHESIS = "synthesis"
_RESULT_TAG = "ADAPIX_BENCH_RESULT "


# ---- results -----------------------------------------------------------------------------------

@dataclass
class SpeedResult:
    """One measured configuration. Times in seconds (medians), memory in MB (2**20 bytes).

    ``encode_s`` is None for the synthesis-only row; ``peak_mem_mb`` is the larger of
    ``encode_mem_mb`` and ``decode_mem_mb``; None where not measured."""

    name: str                    # "adapix:<profile>", "adapix:synthesis", "mbt2018:q6"
    width: int
    height: int
    encode_s: float | None
    decode_s: float | None
    runs: int
    peak_mem_mb: float | None = None
    kmac_per_pixel: float | None = None
    encode_mem_mb: float | None = None
    decode_mem_mb: float | None = None
    bytes: int | None = None     # size of the coded image (random-weight models: not meaningful)
    note: str = ""

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass
class Ratios:
    """Decode-time ratios at one size (None where a side was not measured)."""

    width: int
    height: int
    profile: str                                  # the Adapix row used
    adapix_over_synthesis: float | None           # Adapix decode / synthesis-only
    mbt_over_adapix: float | None                 # mbt2018 decode / Adapix decode


@dataclass
class BenchConfig:
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
    runs: int = DEFAULT_RUNS
    threads: int = DEFAULT_THREADS
    profiles: tuple[str, ...] | None = ("fast",)  # None: every registered profile
    model: str | None = None                     # weights file; None: the shipped model
    image: str | None = None                     # test picture (tiled/cropped); None: synthetic
    quality: float = 50.0
    time_budget: float | None = None             # for profiles with online optimisation
    mbt: bool = True
    mbt_quality: int = DEFAULT_MBT_QUALITY
    mbt_runs: int | None = None                  # timed runs of mbt2018; None: ``runs``
    memory: bool = True
    complexity: bool = True
    seed: int = 0
    bf16: bool = False  # Adapix rows with the synthesis in bfloat16 (named ``...+bf16``)


@dataclass
class BenchReport:
    config: dict
    environment: dict
    results: list[SpeedResult] = field(default_factory=list)
    ratios: list[Ratios] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


# ---- arguments ---------------------------------------------------------------------------------

def parse_size(text: str) -> tuple[int, int]:
    """``"768x512"`` -> (768, 512) (width, height); ValueError with a one-line message."""
    parts = text.strip().lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"bad size {text!r} (expected WIDTHxHEIGHT, e.g. 768x512)")
    w, h = int(parts[0]), int(parts[1])
    if not (1 <= w <= 16384 and 1 <= h <= 16384):
        raise ValueError(f"bad size {text!r} (width and height must be in 1..16384)")
    return w, h


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    items = [t for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError("no sizes given (expected e.g. 768x512,1920x1080)")
    return tuple(dict.fromkeys(parse_size(t) for t in items))  # in order, without repeats
