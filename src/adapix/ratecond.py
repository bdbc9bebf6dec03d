"""Rate-conditioned transforms: a per-channel affine map of each hidden layer, set by the quality.

The variable-rate model shares one g_a and one g_s across all K lambda anchors and moves only the
latent's per-channel gains with the quality (Cui et al. 2021, ``adapix.model``). With
``ModelConfig.rate_modulation`` the hidden layers adapt too, as in the conditional convolution
of Choi, El-Khamy and Lee, "Variable Rate Deep Image Compression With a Conditional
Autoencoder", ICCV 2019: before each GDN of g_a (and each inverse GDN of g_s) the convolution's
output h (B, N, H, W) becomes

    h * scale(t) + shift(t),   scale(t) = exp(interp(log_scale, t)),  shift(t) = interp(shift, t)

with tables (K, L, N) (L = 3 hidden layers per transform, N channels; Ns for g_s) interpolated
linearly between the anchors floor(t) and ceil(t), as the gains are. The tables start at zero,
which is the identity, so a model trained without modulation gains it with the same function
(:func:`add_rate_modulation`) and goes on training; the tables come last in the model's parameters,
so an optimiser state of the model without them keeps its indices. Cost: one multiply-add per
hidden activation.

Data flow::

    y     = g_a(x, rate_mod.analysis(t)) * gain(t)           # mods: ((B, L, N), (B, L, N))
    x_hat = g_s(y_hat * inv_gain(t), delta, rate_mod.synthesis(t))
"""

from __future__ import annotations

import torch
from torch import nn

LAYERS = 3  # hidden (GDN) layers of g_a and of g_s
TABLES = ("a_log_scale", "a_shift", "s_log_scale", "s_shift")
"""The parameters of :class:`RateModulation`: (K, LAYERS, N) for g_a ("a_"), (K, LAYERS, Ns)
for g_s ("s_")."""
PREFIX = "rate_mod."  # their keys in an AdapixModel state dict


def interp_rows(table: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Rows of ``table`` (K, ...) interpolated linearly at positions t (B,) in [0, K-1] ->
    (B, ...)."""
    K = table.shape[0]
    t = t.clamp(0, K - 1).float()
    i0 = torch.floor(t).long().clamp(max=K - 2)
    frac = (t - i0.float()).view(-1, *([1] * (table.dim() - 1)))
    return table[i0] * (1 - frac) + table[i0 + 1] * frac


def modulate(h: torch.Tensor, mods: tuple[torch.Tensor, torch.Tensor] | None, layer: int
             ) -> torch.Tensor:
    """h (B, N, H, W) * scale + shift of hidden layer ``layer``; ``mods`` None: h unchanged."""
    if mods is None:
        return h
    scale, shift = mods
    B, N = h.shape[:2]
    return (h * scale[:, layer].reshape(B, N, 1, 1).to(h.dtype)
            + shift[:, layer].reshape(B, N, 1, 1).to(h.dtype))


class RateModulation(nn.Module):
    """The modulation tables of g_a and g_s (K anchors, LAYERS hidden layers, N channels of g_a
    and Ns of g_s, by default N), zero (the identity) at initialisation."""

    def __init__(self, K: int, N: int, Ns: int | None = None):
        super().__init__()
        for name in TABLES:
            width = N if name.startswith("a_") or Ns is None else Ns
            setattr(self, name, nn.Parameter(torch.zeros(K, LAYERS, width)))

    def _at(self, side: str, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_scale, shift = getattr(self, f"{side}_log_scale"), getattr(self, f"{side}_shift")
        return torch.exp(interp_rows(log_scale, t)), interp_rows(shift, t)

    def analysis(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift) of g_a's hidden layers at positions t (B,): each (B, LAYERS, N)."""
        return self._at("a", t)

    def synthesis(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift) of g_s's hidden layers at positions t (B,): each (B, LAYERS, N)."""
        return self._at("s", t)


def add_rate_modulation(state: dict[str, torch.Tensor], K: int, N: int, Ns: int | None = None
                        ) -> dict[str, torch.Tensor]:
    """A state dict of a model without modulation made to fit one with it: the tables are added
    at the identity, so the model computes the same function. A state that has them all is
    returned unchanged."""
    keys = [PREFIX + name for name in TABLES]
    missing = [k for k in keys if k not in state]
    if not missing:
        return state
    if len(missing) != len(keys):
        raise ValueError(f"the state has only some of the rate-modulation tables (missing "
                         f"{', '.join(missing)})")
    return {**state, **RateModulation(K, N, Ns).state_dict(prefix=PREFIX)}


__all__ = ["LAYERS", "PREFIX", "RateModulation", "TABLES", "add_rate_modulation", "interp_rows",
           "modulate"]
