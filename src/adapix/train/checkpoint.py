"""Checkpoint files of ``adapix train`` (``checkpoint.pt``): the atomic write and the fields
that readers other than the trainer need (``adapix export``), without importing the trainer.

A checkpoint is a ``torch.save`` dict: ``model`` (state dict), ``opt``, ``step``,
``model_config`` and ``train_config`` (``dataclasses.asdict``), the RNG states and
``postfilter_trained``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


def checkpoint_postfilter_trained(ck: dict) -> bool:
    """Whether a checkpoint's post-filter is trained (checkpoints written before the flag: when
    its stage was "postfilter")."""
    return bool(ck.get("postfilter_trained",
                       ck.get("train_config", {}).get("stage") == "postfilter"))


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file next to ``path``, then an atomic rename, so a killed
    process never leaves a half-written checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
