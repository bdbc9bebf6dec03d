"""Helpers shared by the CLI subcommands: error reporting, file lists, output paths."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from ..errors import AdapixError


def fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 1


class Parser(argparse.ArgumentParser):
    """argparse that returns exit status 2 via SystemExit without a traceback."""

    def __init__(self, *a, **kw):
        kw.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*a, **kw)


class ArgError(Exception):
    """A bad command-line argument, reported by the subcommand as one line with exit status 2."""


class RaisingParser(argparse.ArgumentParser):
    """argparse whose errors raise :class:`ArgError` (one line, no usage dump, no SystemExit)."""

    def error(self, message: str):
        raise ArgError(message)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def expand_inputs(items: list[str], extensions: set[str]) -> list[Path]:
    """Files as given; directories expanded (recursively) to files with the given extensions."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in extensions)
        else:
            out.append(p)
    return out


def output_path(src: Path, out: str | None, suffix: str, many: bool) -> Path:
    """Where the output of ``src`` goes: ``out`` (a file, or a directory when many inputs),
    else next to the input with ``suffix``."""
    if out is None:
        return src.with_suffix(suffix)
    o = Path(out)
    if many or o.is_dir() or out.endswith(os.sep):
        o.mkdir(parents=True, exist_ok=True)
        return o / (src.stem + suffix)
    return o


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


__all__ = ["fail", "Parser", "expand_inputs", "output_path", "write_atomic", "same_file",
           "AdapixError"]
