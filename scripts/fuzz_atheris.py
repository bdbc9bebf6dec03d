"""Long-running fuzzer of the whole Adapix decoder (container, entropy decoders, transforms).

    python scripts/fuzz_atheris.py --seconds 600                    # atheris (coverage-guided)
    python scripts/fuzz_atheris.py --seconds 600 --engine random    # pure-Python mutation loop

``pip install -e ".[fuzz]"`` installs atheris; without it, ``--engine random`` needs nothing
beyond Adapix. Every case is decoded with ``Codec.decode_ex`` (then turned into a PIL image) and
must end in one of two ways:

* **ok**: decodes to an image of the declared size (pixels (h, w, 1 or 3), alpha (h, w));
* **rejected**: raises :class:`adapix.AdapixError` with a non-empty one-line message.

Anything else -- another exception type, a multi-line message, a wrong output size -- is a
finding: the first ``--keep`` distinct ones are saved (input ``.apx`` and traceback) under
``--out``/findings. Cases slower than ``--slow`` seconds are counted (and the first few saved) as
possible hangs.

Seeds (``--out``/seeds, made on the first run, or given with ``--corpus``): small synthetic
images (RGB, grey, alpha + ICC, 1x1, several blocks, tiled when the codec can tile) encoded
with the golden TINY model of tests/fixtures/tiny.safetensors and, when present, with the
shipped model; plus tests/fixtures/golden.apx. Each case is decoded with the loaded model whose id the (mutated)
header names, or the first model otherwise (then the file is a model mismatch).

Half of the cases get their CRC32 recomputed after mutation (atheris: bit 0 of the input's first
byte; the rest is the file), so the mutation reaches the header and section parsers, the entropy
decoders and the synthesis instead of stopping at the checksum.

``--max-pixels`` (default 65536) is the decoder's limit: a mutated header may declare any size,
and a valid entropy stream decodes to any declared size, so the limit keeps each case small;
larger sizes must be refused by the limit (checked like any other case).

Prints one summary line every ``--report`` seconds and a final summary (also written to
``--out``/summary.json): cases tried, decoded OK, rejected with AdapixError, other exceptions,
slow cases, the slowest case, peak RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import platform
import random
import resource
import struct
import sys
import time
import traceback
import zlib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
SHIPPED = ROOT / "src" / "adapix" / "weights" / "adapix-default.safetensors"
CRC = struct.Struct(">I")


# ---- seeds -------------------------------------------------------------------------------------
def synthetic(h: int, w: int, seed: int = 0, channels: int = 3):
    """Smooth gradients + sine texture + noise, uint8 (h, w, channels); like tests/conftest.py."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([40 + 170 * xx / max(w - 1, 1), 60 + 140 * yy / max(h - 1, 1),
                    128 + 80 * np.sin(xx / 6.0) * np.cos(yy / 9.0)], axis=-1)
    img += rng.normal(0.0, 6.0, img.shape)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if channels == 1:
        return np.ascontiguousarray(img.mean(axis=2, keepdims=True).round().astype(np.uint8))
    return img


def make_seeds(codecs: list, out: Path) -> list[Path]:
    """Writes seed .apx files for every codec into ``out``; returns their paths."""
    import numpy as np

    from adapix.images import RasterImage

    out.mkdir(parents=True, exist_ok=True)
    alpha = np.tile(np.linspace(0, 255, 40).round().astype(np.uint8), (24, 1))
    images = {
        "rgb-32x48-q60": (RasterImage(synthetic(32, 48)), 60),
        "grey-16x24-q10": (RasterImage(synthetic(16, 24, 1, channels=1)), 10),
        "rgba-icc-24x40-q90": (RasterImage(synthetic(24, 40, 2), alpha=alpha,
                                           icc=b"not-really-an-icc-profile"), 90),
        "rgb-1x1-q0": (RasterImage(synthetic(1, 1, 3)), 0),
        "rgb-70x20-q100": (RasterImage(synthetic(70, 20, 4)), 100),
    }
    tiled = "tile_size" in inspect.signature(codecs[0].encode_ex).parameters
    paths = []
    for codec in codecs:
        for name, (img, q) in images.items():
            p = out / f"{codec.model_id}-{name}.apx"
            p.write_bytes(codec.encode(img, quality=q))
            paths.append(p)
        if tiled:  # a 3x2 grid of 64-pixel tiles, the last column and row partial
            p = out / f"{codec.model_id}-tiled-150x100-q50.apx"
            p.write_bytes(codec.encode_ex(RasterImage(synthetic(100, 150, 5)), quality=50,
                                          tile_size=64).data)
            paths.append(p)
    if (FIXTURES / "golden.apx").exists():
        p = out / "tiny-golden-golden.apx"
        p.write_bytes((FIXTURES / "golden.apx").read_bytes())
        paths.append(p)
    return paths


# ---- mutations (random engine) -----------------------------------------------------------------
INTERESTING_U32 = [0, 1, 2, 63, 64, 65, 255, 256, 4095, 4096, 65535, 65536, 2**24, 2**30,
                   2**30 + 1, 2**31 - 1, 2**31, 2**32 - 1]
INTERESTING_U8 = [0, 1, 2, 3, 4, 5, 6, 7, 15, 16, 17, 64, 65, 127, 128, 254, 255]


def reseal(data: bytes) -> bytes:
    """Replaces the last 4 bytes by the CRC32 of the rest (no-op on a valid file)."""
    if len(data) < 4:
        return data
    body = data[:-4]
    return body + CRC.pack(zlib.crc32(body))


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    """One random case: random data, or a seed with 1..8 mutations, then resealed half the time."""
    kind = rng.random()
    if kind < 0.03:
        return rng.randbytes(rng.randrange(0, 400))
    data = bytearray(rng.choice(seeds))
    if kind < 0.06:  # magic + version + random rest
        data = bytearray(data[:5] + rng.randbytes(rng.randrange(0, 400)))
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 8))):
        op = rng.randrange(11)
        n = len(data)
        i = rng.randrange(n) if n else 0
        if op == 0 and n:                       # bit flip
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:                     # byte replacement
            data[i] = rng.choice(INTERESTING_U8) if rng.random() < 0.5 else rng.randrange(256)
        elif op == 2:                           # insertion
            data[i:i] = rng.randbytes(rng.randrange(1, 17))
        elif op == 3 and n:                     # deletion
            del data[i:i + rng.randrange(1, 17)]
        elif op == 4 and n:                     # truncation
            del data[rng.randrange(n):]
        elif op == 5:                           # appended garbage
            data += rng.randbytes(rng.randrange(1, 65))
        elif op == 6 and n >= 4:                # u32 field (header sizes, section lengths)
            j = rng.randrange(n - 3)
            if rng.random() < 0.7:              # aim at width/height or a section length
                j = rng.choice([5, 9] + [j] * 2)
            v = rng.choice(INTERESTING_U32) if rng.random() < 0.7 else rng.randrange(2**32)
            data[j:j + 4] = struct.pack(">I", min(v, 2**32 - 1))
        elif op == 7 and n:                     # splice with another seed
            other = rng.choice(seeds)
            j = rng.randrange(len(other))
            data[i:] = other[j:]
        elif op == 8 and n >= 2:                # duplicate a chunk
            j = rng.randrange(n)
            data[i:i] = data[j:j + rng.randrange(1, 33)]
        elif op == 9 and n > 40:                # mutate inside the sections only
            j = rng.randrange(36, n - 4)
            data[j] = rng.randrange(256)
        elif op == 10 and n >= 23:              # header byte: colour, profile, flags, id length
            j = rng.choice([13, 14, 15, 16, 17, 18, 19, 20, 21])
            data[j] = rng.choice(INTERESTING_U8)
    out = bytes(data)
    return reseal(out) if rng.random() < 0.5 else out


# ---- one case ----------------------------------------------------------------------------------
class Harness:
    def __init__(self, codecs: list, out: Path, keep: int, slow: float):
        from adapix.errors import AdapixError
        from adapix.images import to_pil

        self.AdapixError, self.to_pil = AdapixError, to_pil
        self.codecs = codecs
        self.by_id = {c.model_id.encode(): c for c in codecs}
        self.out, self.keep, self.slow = out, keep, slow
        self.counts: Counter = Counter()
        self.messages: Counter = Counter()
        self.findings: dict[str, int] = {}
        self.slowest = (0.0, "")
        self.t0 = time.monotonic()
        (out / "findings").mkdir(parents=True, exist_ok=True)

    def codec_for(self, data: bytes):
        if len(data) >= 23:
            n = data[21]
            c = self.by_id.get(bytes(data[22:22 + n]))
            if c is not None:
                return c
        return self.codecs[0]

    def run(self, data: bytes) -> str:
        """Decodes one case and classifies it: 'ok', 'rejected' or 'other'."""
        t = time.perf_counter()
        outcome, problem = "other", None
        try:
            res = self.codec_for(data).decode_ex(data)
            img, h = res.image, res.header
            self.to_pil(img)
            want = (h.height, h.width, 1 if h.color == 1 else 3)
            if img.pixels.shape != want:
                problem = f"decoded shape {img.pixels.shape}, header says {want}"
            elif h.alpha and (img.alpha is None or img.alpha.shape != want[:2]):
                problem = "alpha plane missing or of the wrong size"
            else:
                outcome = "ok"
        except self.AdapixError as e:
            msg = str(e)
            if msg and "\n" not in msg:
                outcome = "rejected"
                self.messages[_message_kind(msg)] += 1
            else:
                problem = f"{type(e).__name__} with a bad message: {msg!r}"
        except KeyboardInterrupt:
            raise
        except BaseException:  # noqa: BLE001 -- everything else is a finding (pyo3 panics too)
            problem = traceback.format_exc()
        dt = time.perf_counter() - t
        self.counts["tried"] += 1
        self.counts[outcome] += 1
        if dt > self.slowest[0]:
            self.slowest = (dt, hashlib.sha256(data).hexdigest()[:16])
        if dt > self.slow:
            self.counts["slow"] += 1
            if self.counts["slow"] <= self.keep:
                self._save("slow", data, f"{dt:.3f} s\n")
        if problem is not None:
            self._finding(data, problem)
        return outcome

    def _finding(self, data: bytes, problem: str) -> None:
        lines = problem.strip().splitlines()
        sig = lines[-1][:200] + " @ " + next((ln.strip() for ln in reversed(lines)
                                              if ln.strip().startswith("File ")), "")
        self.findings[sig] = self.findings.get(sig, 0) + 1
        if self.findings[sig] == 1 and len(self.findings) <= self.keep:
            self._save(f"finding-{len(self.findings):03d}", data, problem)

    def _save(self, stem: str, data: bytes, text: str) -> None:
        d = self.out / "findings"
        (d / f"{stem}.apx").write_bytes(data)
        (d / f"{stem}.txt").write_text(text)

    def summary(self) -> dict:
        rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {
            "seconds": round(time.monotonic() - self.t0, 1),
            "tried": self.counts["tried"], "ok": self.counts["ok"],
            "rejected": self.counts["rejected"], "other": self.counts["other"],
            "slow": self.counts["slow"], "slow_threshold_s": self.slow,
            "slowest_s": round(self.slowest[0], 3), "slowest_sha256_16": self.slowest[1],
            "peak_rss_mib": round(rss_kib / 1024, 1),
            "distinct_findings": len(self.findings),
            "findings": self.findings,
            "rejection_messages": dict(self.messages.most_common(40)),
        }

    def line(self) -> str:
        c = self.counts
        return (f"[{time.monotonic() - self.t0:7.1f} s] tried {c['tried']}, ok {c['ok']}, "
                f"rejected {c['rejected']}, other {c['other']}, slow {c['slow']}")


def _message_kind(msg: str) -> str:
    """A rejection message without its numbers, to group them."""
    out, prev_digit = [], False
    for ch in msg:
        d = ch.isdigit()
        if not (d and prev_digit):
            out.append("N" if d else ch)
        prev_digit = d
    return "".join(out)[:100]


# ---- engines -----------------------------------------------------------------------------------
def run_random(h: Harness, seeds: list[bytes], seconds: float, seed: int, report: float) -> None:
    rng = random.Random(seed)
    end = time.monotonic() + seconds
    next_report = time.monotonic() + report
    for s in seeds:  # the seeds themselves must decode
        h.run(s)
    while time.monotonic() < end:
        h.run(mutate(rng, seeds))
        if time.monotonic() >= next_report:
            print(h.line(), flush=True)
            next_report += report


def run_atheris(h: Harness, seeds: list[bytes], seconds: float, seed: int, report: float,
                work: Path, finish) -> None:
    import atheris

    work.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(seeds):  # first byte: bit 0 = recompute the CRC
        (work / f"seed-{i:02d}-raw").write_bytes(b"\x00" + s)
        (work / f"seed-{i:02d}-crc").write_bytes(b"\x01" + s)
    end = time.monotonic() + seconds
    state = {"next": time.monotonic() + report}

    def one_input(buf: bytes) -> None:
        now = time.monotonic()
        if now >= end:
            finish()
            os._exit(1 if h.counts["other"] else 0)  # libFuzzer's exit skips Python's atexit
        if now >= state["next"]:
            print(h.line(), flush=True)
            state["next"] += report
        if not buf:
            return
        data = bytes(buf[1:])
        h.run(reseal(data) if buf[0] & 1 else data)

    argv = [sys.argv[0], f"-seed={seed}", f"-max_total_time={int(seconds) + 120}",
            "-timeout=60", "-rss_limit_mb=8192", "-max_len=4096", "-print_final_stats=1",
            str(work)]
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


# ---- main --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0, help="how long to fuzz (default 60)")
    p.add_argument("--engine", choices=("atheris", "random"), default="atheris")
    p.add_argument("--corpus", type=Path, default=None,
                   help="folder of seed .apx files (default: make them under --out/seeds)")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "fuzz",
                   help="seeds, atheris working corpus, findings, summary.json")
    p.add_argument("--no-shipped", action="store_true", help="do not load the shipped model")
    p.add_argument("--max-pixels", type=int, default=65536, help="decoder limit (default 65536)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--slow", type=float, default=2.0, help="seconds above which a case is slow")
    p.add_argument("--keep", type=int, default=10, help="findings saved with their input")
    p.add_argument("--report", type=float, default=60.0, help="seconds between progress lines")
    a = p.parse_args(argv)

    if a.engine == "atheris":
        try:
            import atheris
        except ImportError:
            p.error("atheris is not installed (pip install -e '.[fuzz]'); use --engine random")
        with atheris.instrument_imports(include=["adapix"]):
            import adapix.codec  # noqa: F401 -- instrumented for coverage
            import adapix.images  # noqa: F401
    import torch

    from adapix.codec import Codec

    torch.set_num_threads(1)
    weights = [FIXTURES / "tiny.safetensors"]
    if SHIPPED.exists() and not a.no_shipped:
        weights.append(SHIPPED)
    codecs = [Codec(w, max_pixels=a.max_pixels) for w in weights]
    if a.corpus is None:
        a.corpus = a.out / "seeds"
        make_seeds(codecs, a.corpus)
    seed_paths = sorted(a.corpus.glob("*.apx"))
    if not seed_paths:
        p.error(f"no .apx seeds in {a.corpus}")
    seeds = [q.read_bytes() for q in seed_paths]

    h = Harness(codecs, a.out, a.keep, a.slow)
    info = {"engine": a.engine, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "models": [c.model_id for c in codecs], "max_pixels": a.max_pixels,
            "seeds": len(seeds), "seed": a.seed}
    print(json.dumps(info), flush=True)

    def finish() -> None:
        s = {**info, **h.summary()}
        (a.out / "summary.json").write_text(json.dumps(s, indent=1) + "\n")
        print(h.line(), flush=True)
        print(json.dumps({k: v for k, v in s.items() if k != "rejection_messages"}, indent=1))
        print(f"summary: {a.out / 'summary.json'}", flush=True)

    if a.engine == "random":
        run_random(h, seeds, a.seconds, a.seed, a.report)
        finish()
    else:
        run_atheris(h, seeds, a.seconds, a.seed, a.report, a.out / "corpus", finish)
    return 1 if h.counts["other"] else 0


if __name__ == "__main__":
    sys.exit(main())
