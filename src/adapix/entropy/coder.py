"""Entropy coding with constriction's ANS coder (Bamler, "Understanding entropy coding with
asymmetric numeral systems (ANS)", 2022).

The coder only ever sees integers: symbols, and for the Gaussian model an index into a fixed
scale table (the mean is removed before coding, see :mod:`adapix.entropy.gaussian`). Everything is
vectorised: one call per MSP step, no Python loop over symbols.

ANS is a stack (last in, first out). :class:`StepEncoder` records the steps in decoding order and
pushes them in reverse when :meth:`StepEncoder.finish` is called, so :class:`StepDecoder` pops them
in the same order as the encoder produced them.
"""

from __future__ import annotations

import numpy as np
import constriction

from ..errors import FormatError

_model = constriction.stream.model


def _to_bytes(words: np.ndarray) -> bytes:
    return np.asarray(words, dtype="<u4").tobytes()


def _from_bytes(data: bytes) -> np.ndarray:
    if len(data) % 4:
        raise FormatError("corrupted entropy-coded section (length is not a multiple of 4)")
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


def _guard(fn, what: str):
    """Runs a constriction decode; any failure (including a Rust panic) becomes FormatError."""
    try:
        return fn()
    except (KeyboardInterrupt, SystemExit):
        raise
    except FormatError as exc:
        raise FormatError(f"corrupted {what} section: {exc}") from None
    except BaseException as exc:  # pyo3 panics derive from BaseException
        raise FormatError(f"corrupted {what} section ({type(exc).__name__})") from None


def encode_per_channel(symbols: np.ndarray, pmf: np.ndarray) -> bytes:
    """symbols int32 (C, n), pmf (C, L): channel c coded with its own fixed table, c = 0 first."""
    enc = constriction.stream.stack.AnsCoder()
    for c in range(symbols.shape[0] - 1, -1, -1):
        if symbols.shape[1]:
            model = _model.Categorical(np.asarray(pmf[c], dtype=np.float64), perfect=False)
            enc.encode_reverse(np.ascontiguousarray(symbols[c], dtype=np.int32), model)
    return _to_bytes(enc.get_compressed())


def decode_per_channel(data: bytes, pmf: np.ndarray, n: int,
                       what: str = "side-information") -> np.ndarray:
    """Inverse of encode_per_channel: returns int32 (C, n)."""
    words = _from_bytes(data)

    def run():
        dec = constriction.stream.stack.AnsCoder(words)
        out = np.zeros((pmf.shape[0], n), dtype=np.int32)
        for c in range(pmf.shape[0]):
            if n:
                model = _model.Categorical(np.asarray(pmf[c], dtype=np.float64), perfect=False)
                out[c] = dec.decode(model, n)
        if not dec.is_empty():
            raise FormatError("trailing data")
        return out

    return _guard(run, what)


class GaussianTable:
    """Zero-mean quantized Gaussians with standard deviations from a fixed log-spaced table."""

    def __init__(self, stds: np.ndarray, symbol_max: int):
        self.stds = np.asarray(stds, dtype=np.float64)
        self.symbol_max = int(symbol_max)
        self.model = _model.QuantizedGaussian(-self.symbol_max, self.symbol_max - 1)

    def params(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        std = self.stds[index.astype(np.int64)]
        return np.zeros_like(std), std


class StepEncoder:
    """Records (symbols, scale indices) per step; ``finish`` returns the bytes."""

    mode = "encode"

    def __init__(self, table: GaussianTable):
        self.table = table
        self.steps: list[tuple[np.ndarray, np.ndarray]] = []

    def code(self, symbols: np.ndarray, index: np.ndarray) -> np.ndarray:
        self.steps.append((symbols.astype(np.int32), index))
        return symbols

    def finish(self) -> bytes:
        enc = constriction.stream.stack.AnsCoder()
        for symbols, index in reversed(self.steps):
            if symbols.size:
                mean, std = self.table.params(index)
                enc.encode_reverse(symbols, self.table.model, mean, std)
        return _to_bytes(enc.get_compressed())


class StepDecoder:
    """Pops symbols step by step, given the same scale indices the encoder used."""

    mode = "decode"

    def __init__(self, table: GaussianTable, data: bytes):
        self.table = table
        self.words = _from_bytes(data)
        self.ans = _guard(lambda: constriction.stream.stack.AnsCoder(self.words), "content")

    def code(self, symbols: np.ndarray | None, index: np.ndarray) -> np.ndarray:
        if index.size == 0:
            return np.zeros(0, dtype=np.int32)
        mean, std = self.table.params(index)
        return np.asarray(_guard(lambda: self.ans.decode(self.table.model, mean, std), "content"),
                          dtype=np.int32)

    def finish(self) -> None:
        if not self.ans.is_empty():
            raise FormatError("corrupted content section (data left after the last symbol)")
