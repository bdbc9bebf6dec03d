"""Tests of scripts/search_trace.py's block tracing: it records the greedy search's chunking
only inside its context and leaves the search as it was afterwards."""

from __future__ import annotations

import pytest
import torch

from adapix.optimize import greedy
from helpers import load_script


@pytest.fixture
def script(monkeypatch):
    return load_script("search_trace", monkeypatch)  # it imports tune_profiles from beside it


def _flips(n: int) -> greedy._Flips:
    cand = torch.arange(n)
    return greedy._Flips([(0, cand, torch.zeros(n), torch.linspace(0, 1, n))])


def test_trace_blocks_records_inside_and_restores_after(script):
    original = greedy._Flips.chunks
    points: list = []
    with script.trace_blocks(points):
        assert greedy._Flips.chunks is not original
        out = _flips(10).chunks(3)
    assert greedy._Flips.chunks is original
    assert [len(c) for c in out] == [4, 3, 3]  # the search's own chunks, unchanged
    assert len(points) == 1 and points[0][1:] == (10, 3)
    _flips(5).chunks(2)  # outside: nothing more recorded
    assert len(points) == 1
    with script.trace_blocks(None):  # tracing off: the search is not touched at all
        assert greedy._Flips.chunks is original


def test_trace_blocks_restores_after_an_error(script):
    original = greedy._Flips.chunks
    with pytest.raises(RuntimeError):
        with script.trace_blocks([]):
            raise RuntimeError("stop")
    assert greedy._Flips.chunks is original
