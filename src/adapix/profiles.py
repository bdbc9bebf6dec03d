"""Encoder profiles: named balance points of compression efficiency against encoding time.

A profile is data (a dataclass); its ``run`` codes one padded image x (1,3,Hp,Wp) at quality
position t and returns a :class:`adapix.model.CodingResult`. Decoding cost never depends on the
profile (only the post-filter flag, stored in the file, adds a small filter at the decoder).

* ``fast``: no online optimisation; encoding costs about one decode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import AdapixError
from .model import AdapixModel, CodingResult


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    postfilter: bool = False

    def run(self, model: AdapixModel, x: torch.Tensor, hw: tuple[int, int], t: float,
            postfilter: bool, time_budget: float | None = None) -> CodingResult:
        del hw, time_budget
        return model.compress(x, t, postfilter=postfilter)


PROFILES: dict[str, Profile] = {
    "fast": Profile("fast", "no online optimisation: encoding is about as fast as decoding"),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise AdapixError(f"unknown profile {name!r} (available: {', '.join(PROFILES)})") from None
