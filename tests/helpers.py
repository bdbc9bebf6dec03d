"""Helpers shared by several test modules (imported as ``from helpers import ...``)."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from types import ModuleType

import torch

from adapix import container
from adapix.container import ApxFile

SCRIPTS = Path(__file__).parents[1] / "scripts"


def load_script(name: str, monkeypatch=None) -> ModuleType:
    """``scripts/<name>.py`` loaded as a module (the scripts are not a package). With pytest's
    ``monkeypatch``, the scripts folder is on ``sys.path`` for the test, for scripts that import
    a script beside them."""
    if monkeypatch is not None:
        monkeypatch.syspath_prepend(str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def repack(data: bytes, sections: dict | None = None, max_pixels: int | None = None,
           **fields) -> bytes:
    """Re-packs a valid .apx file with changed sections (payload None: removed) or header fields,
    with a valid CRC, so that only the change is tested. ``max_pixels``: the unpack limit (None:
    the default)."""
    kw = {} if max_pixels is None else {"max_pixels": max_pixels}
    f = container.unpack(data, **kw)
    secs = dict(f.sections)
    for kind, payload in (sections or {}).items():
        if payload is None:
            secs.pop(kind, None)
        else:
            secs[kind] = payload
    return container.pack(ApxFile(dataclasses.replace(f.header, **fields), secs))


def harm_postfilter(model):
    """Scales the post-filter's last layer 40x in place: a filter that adds strong noise-like
    residuals and hurts every image, so that coding without it is cheaper. Returns the model."""
    with torch.no_grad():
        model.postfilter.c3.weight.mul_(40)
    return model
