"""Function-preserving widening: a trained model with N (and M) channels -> N' >= N, M' >= M,
and the synthesis alone: Ns -> Ns' >= Ns (``ModelConfig.synthesis_channels``).

A larger model need not start from scratch. Every tensor of the wide model that has a widened
dimension gets the trained values at the old channels' new positions; the new channels start so
that they are exactly zero everywhere, so the wide model computes the same function as the narrow
one (the idea of Chen et al., "Net2Net: Accelerating learning via knowledge transfer", ICLR 2016,
with zero instead of copied units):

    layer producing channels (Conv2d, Linear: dim 0; ConvTranspose2d: dim 1)
        new output channels: weight 0, bias 0      -> the new activations are 0
    layer consuming channels (Conv2d, Linear: dim 1; ConvTranspose2d: dim 0)
        new input channels: the fresh model's random init (they multiply zeros, so change nothing,
        and they give the zero-initialised incoming weights a gradient)
    GDN (beta (C,), gamma (C, C)): the fresh init around the trained block; a zero input channel
        stays zero (x / norm, x * norm) and adds gamma * 0 to the other channels' norms
    rate-modulation tables (K, 3, N) (adapix.ratecond), if any: the new channels at zero, the
        identity

N (the channels of g_a, and of g_s unless ``synthesis_channels`` sets them apart) and Ns (g_s's
channels and the generator's per-image synthesis weights, (B, Ns, 3, 5, 5)): the old channels keep
their indices, the new ones come last.

M (the latent y, (B, M, h, w), coded in ``groups`` channel groups of M / groups): each group
grows by the same count at its end, so old channel c = g * Mg + o moves to g * Mg' + o (:func:`
latent_index`) and keeps its group and its place in the coding order. Every tensor indexed by
y's channels follows (the gains (K, M), g_a's last layer, g_s's, h_a's and the model stream's
first layers); h_s's hidden and output channels (M, 3M/2, 2M) grow at their ends. The context
nets' inputs ([hyper features 2M | decoded phases, M each | earlier groups, Mg each]) and outputs
([mu Mg | log sigma Mg]) are mapped block by block. A new latent channel is y = 0 with mu = 0
(zero weights) and sigma = ``scale_min`` (zero weights, bias log(scale_min)), so it rounds to 0
and costs about 1e-5 bits per new element: the same reconstruction, the same rate up to that.
Options for training the new channels (session 21, docs/training.md): a wider initial sigma
(``new_sigma``) and ``new_latent="active"`` (they start as random features of g_a that nothing
reads yet, :func:`_activate_new_latent`).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from .config import ModelConfig
from .layers import GDN
from .model import AdapixModel


def _out_dim(module: nn.Module) -> int:
    """The dimension of a weight that indexes output channels."""
    return 1 if isinstance(module, nn.ConvTranspose2d) else 0


def latent_index(old: ModelConfig, new: ModelConfig) -> torch.Tensor:
    """Where each of the M latent channels of ``old`` sits among the M' of ``new`` (M,): channel
    g * Mg + o of group g goes to g * Mg' + o."""
    Mg, Mg_new = old.M // old.groups, new.M // new.groups
    c = torch.arange(old.M)
    return (c // Mg) * Mg_new + c % Mg


def new_latent_mask(old: ModelConfig, new: ModelConfig) -> torch.Tensor:
    """(M',) bool: True at the latent channels of ``new`` that widening ``old`` adds."""
    mask = torch.ones(new.M, dtype=torch.bool)
    mask[latent_index(old, new)] = False
    return mask


def index_maps(old: ModelConfig, new_model: nn.Module) -> dict[str, tuple]:
    """For each parameter of ``new_model`` whose shape differs from the ``old`` config's: per
    dimension, the positions of the old entries in the new dimension (a LongTensor), or None
    where the size is unchanged. Positions are a prefix except where the latent's channel
    layout applies (module docstring)."""
    new: ModelConfig = new_model.cfg
    narrow = _shapes(old)
    y = latent_index(old, new)
    pre = torch.arange
    Mg, Mg_new = old.M // old.groups, new.M // new.groups
    maps: dict[str, tuple] = {}
    for key, param in new_model.named_parameters():
        shape = narrow[key]
        if tuple(shape) == tuple(param.shape):
            continue
        maps[key] = tuple(None if a == b else pre(a) for a, b in zip(shape, param.shape))
    if old.M == new.M:
        return maps

    def put(key, dim, index):
        entry = list(maps[key])
        entry[dim] = index
        maps[key] = tuple(entry)

    last = f"g_a.net.{len(new_model.g_a.net) - 1}"
    for key, dim in (("log_gain", 1), ("log_inv_gain", 1), (f"{last}.weight", 0),
                     (f"{last}.bias", 0), ("g_s.body.0.weight", 0), ("h_a.net.0.weight", 1),
                     ("syntax.proj.weight", 1)):
        put(key, dim, y)
    out = torch.cat([pre(Mg), Mg_new + pre(Mg)])  # [mu | log sigma]
    for first, last, blocks, g in _context_layers(new_model):
        ins = [pre(2 * old.M)]  # hyper features: prefix
        ins += [2 * new.M + b * new.M + y for b in range(blocks)]  # decoded phases
        ins += [2 * new.M + blocks * new.M + i * Mg_new + pre(Mg) for i in range(g)]  # groups
        put(f"{first}.weight", 1, torch.cat(ins))
        put(f"{last}.weight", 0, out)
        put(f"{last}.bias", 0, out)
    return maps


def _context_layers(model: nn.Module) -> list[tuple[str, str, int, int]]:
    """(first layer's name, last layer's name, decoded phases in the input, group) of each MSP
    context net of ``model`` (adapix.entropy.msp)."""
    nets = [(f"msp.coarse.{g}", net, 0, g) for g, net in enumerate(model.msp.coarse)]
    nets += [(f"msp.phase_nets.{j}.{g}", net, j + 1, g)
             for j, phase in enumerate(model.msp.phase_nets) for g, net in enumerate(phase)]
    return [(f"{name}.net.0", f"{name}.net.{len(net.net) - 1}", blocks, g)
            for name, net, blocks, g in nets]


def _shapes(cfg: ModelConfig) -> dict[str, torch.Size]:
    """Parameter shapes of a model with config ``cfg``, without allocating its tensors."""
    with torch.device("meta"):
        return {k: p.shape for k, p in AdapixModel(cfg).named_parameters()}


def widen_state(state: dict[str, torch.Tensor], old: ModelConfig, new_model: nn.Module,
                new_sigma: float | None = None, new_latent: str = "zero"
                ) -> dict[str, torch.Tensor]:
    """The state of a model with config ``old`` made to fit ``new_model`` (an AdapixModel whose
    config differs only in a larger N, M and/or g_s width Ns), computing the same function up to
    float rounding (and, for a larger M, about 1e-5 bits per new latent element). ``new_model``'s
    own (freshly initialised) parameters provide the random init of the new input channels; it is
    not modified. ``new_sigma`` (> 0): the new latent channels' sigma instead of scale_min. The
    reconstruction stays the same, but each new element (with new_latent "zero", y = 0) costs about
    -log2 P(|n| < 1/2) bits for n ~ N(0, new_sigma): a wide prior the channels can grow into, where
    Adam (about lr per step on log sigma) would take tens of thousands of steps to widen scale_min
    (used with the trainer's ``new_rate_ramp``). ``new_latent`` "active": the new latent channels
    are not 0 but random features (:func:`_activate_new_latent`), and everything that reads y
    ignores them at first; the reconstruction is still the same."""
    if new_sigma is not None and new_sigma <= 0:
        raise ValueError(f"new_sigma must be > 0, got {new_sigma}")
    if new_latent not in ("zero", "active"):
        raise ValueError(f"new_latent must be 'zero' or 'active', got {new_latent!r}")
    new_cfg: ModelConfig = new_model.cfg
    differ = sorted(f.name for f in dataclasses.fields(ModelConfig)
                    if f.name not in ("N", "M", "synthesis_channels", "lambdas")
                    and getattr(old, f.name) != getattr(new_cfg, f.name))
    if differ:
        raise ValueError(f"only N, M and the synthesis channels can be widened; the configs "
                         f"also differ in {', '.join(differ)}")
    for name in ("N", "M", "Ns"):
        if getattr(new_cfg, name) < getattr(old, name):
            raise ValueError(f"widening needs {name} to grow, got {getattr(old, name)} -> "
                             f"{getattr(new_cfg, name)}")
    maps = index_maps(old, new_model)
    fresh = new_model.state_dict()
    out = dict(state)
    log_sigma_new = math.log(new_sigma or new_cfg.scale_min)
    sigma_biases = {f"{last}.bias" for _, last, _, _ in _context_layers(new_model)}
    for name, module in new_model.named_modules():
        for pname, param in module.named_parameters(recurse=False):
            key = f"{name}.{pname}" if name else pname
            src = state.get(key)
            if src is None:
                raise ValueError(f"the source state has no {key}")
            if key not in maps:
                if src.shape != param.shape:
                    raise ValueError(f"{key}: expected {tuple(param.shape)}, got "
                                     f"{tuple(src.shape)}")
                continue
            index = maps[key]
            if tuple(src.shape) != tuple(len(i) if i is not None else n
                                         for i, n in zip(index, param.shape)):
                raise ValueError(f"{key}: cannot widen {tuple(src.shape)} to {tuple(param.shape)}")
            wide = fresh[key].detach().clone().to(src.dtype)
            if not isinstance(module, GDN):
                dim_out = 0 if pname == "bias" else _out_dim(module)
                kept = index[dim_out]
                if kept is not None:
                    new_rows = torch.ones(wide.shape[dim_out], dtype=torch.bool)
                    new_rows[kept] = False
                    wide.index_fill_(dim_out, new_rows.nonzero().flatten(), 0.0)
                    if key in sigma_biases:
                        half = wide.shape[0] // 2  # [mu | log sigma]: new sigmas
                        wide[half:].masked_fill_(new_rows[half:], log_sigma_new)
            _place(wide, src, index)
            out[key] = wide
    if new_latent == "active" and new_cfg.M > old.M:
        _activate_new_latent(out, old, new_model, maps)
    return out


def _activate_new_latent(state: dict[str, torch.Tensor], old: ModelConfig, new_model: nn.Module,
                         maps: dict[str, tuple]) -> None:
    """In place: the new latent channels become random features of g_a's last hidden layer (its
    new output rows drawn with the old rows' mean RMS, bias 0; gains the old channels' mean per
    anchor), so y is away from 0 and rounds to non-zero values, while every layer that reads y
    (g_s, h_a, the model stream's projection, the context nets' decoded-latent inputs) gets
    zero weights on them. Zero-initialised channels sit at a saddle: they round to 0, so the
    weights reading them get no gradient, and the tight prior pins them there (docs/training.md,
    sessions 20-21). Here the readers' gradient is E[y_new * dL/d(input)] from the first step."""
    new_cfg: ModelConfig = new_model.cfg
    y_old = latent_index(old, new_cfg)
    new_idx = new_latent_mask(old, new_cfg).nonzero().flatten()
    last = f"g_a.net.{len(new_model.g_a.net) - 1}"
    w = state[f"{last}.weight"]  # (M, N, k, k)
    rms = w[y_old].pow(2).flatten(1).mean(1).sqrt().mean()
    gen = torch.Generator().manual_seed(new_cfg.M * 7919 + old.M)
    draw = torch.randn(w[new_idx].shape, generator=gen, dtype=torch.float32).to(w.dtype)
    w[new_idx] = draw * rms / draw.pow(2).flatten(1).mean(1).sqrt().view(-1, 1, 1, 1)
    state[f"{last}.bias"][new_idx] = 0.0
    for key in ("log_gain", "log_inv_gain"):
        g = state[key]
        g[:, new_idx] = g[:, y_old].mean(1, keepdim=True)
    state["g_s.body.0.weight"][new_idx] = 0.0
    for key in ("h_a.net.0.weight", "syntax.proj.weight"):
        state[key][:, new_idx] = 0.0
    for first, _, _, _ in _context_layers(new_model):
        key = f"{first}.weight"
        kept = torch.zeros(state[key].shape[1], dtype=torch.bool)
        kept[maps[key][1]] = True
        kept[:2 * new_cfg.M] = True  # hyper features: they multiply h_s's new zero outputs
        state[key][:, ~kept] = 0.0


def _place(wide: torch.Tensor, src: torch.Tensor, index: tuple) -> None:
    """wide[index] = src, where index holds per dimension the target positions or None (all)."""
    full = [i if i is not None else torch.arange(n) for i, n in zip(index, wide.shape)]
    wide[torch.meshgrid(*full, indexing="ij")] = src.to(wide.dtype)


def widen_adam_state(opt_state: dict, params: list[torch.Tensor],
                     maps: list[tuple | None] | None = None) -> dict:
    """An Adam ``state_dict()`` for the narrow model's trainable parameters made to fit ``params``
    (the wide model's, in the same order). ``maps``, aligned with ``params``, gives each one's
    :func:`index_maps` entry (None, or no ``maps``: the trained block is a prefix). Where a
    parameter grew, the first moment of the new entries is 0 and the second the mean of the
    trained block's, so the new entries start at the step size of their neighbours instead of the
    large first steps of an empty second moment; the step counts are kept. The result shares no
    tensor with ``opt_state``."""
    groups = opt_state["param_groups"]
    if sum(len(g["params"]) for g in groups) != len(params):
        raise ValueError(f"the optimiser state has {sum(len(g['params']) for g in groups)} "
                         f"parameters, the model {len(params)}")
    if maps is not None and len(maps) != len(params):
        raise ValueError(f"{len(maps)} index maps for {len(params)} parameters")
    state = {}
    for idx, per_param in opt_state["state"].items():
        shape = params[int(idx)].shape
        new = {k: v.clone() if torch.is_tensor(v) else v for k, v in per_param.items()}
        for name in ("exp_avg", "exp_avg_sq"):
            old = per_param[name]
            if old.shape == shape:
                continue
            if old.dim() != len(shape) or any(a > b for a, b in zip(old.shape, shape)):
                raise ValueError(f"parameter {idx}: cannot widen {tuple(old.shape)} to "
                                 f"{tuple(shape)}")
            index = None if maps is None else maps[int(idx)]
            if index is None:
                index = tuple(None if a == b else torch.arange(a) for a, b in zip(old.shape, shape))
            fill = 0.0 if name == "exp_avg" else float(old.float().mean())
            wide = torch.full(shape, fill, dtype=old.dtype)
            _place(wide, old, index)
            new[name] = wide
        state[idx] = new
    return {"state": state, "param_groups": groups}


def append_adam_params(opt_state: dict, count: int) -> dict:
    """An Adam ``state_dict()`` of one parameter group made to fit ``count`` parameters whose
    first ones are the state's own, in the same order (e.g. a model that gained parameters
    registered last, such as ``AdapixModel.rate_mod``). The new trailing parameters get no
    state, so Adam starts them afresh; the others keep theirs. Shares no tensor with
    ``opt_state``."""
    groups = opt_state["param_groups"]
    if len(groups) != 1:
        raise ValueError(f"expected one parameter group, got {len(groups)}")
    have = groups[0]["params"]
    if count < len(have):
        raise ValueError(f"the optimiser state has {len(have)} parameters, more than {count}")
    start = max(have, default=-1) + 1  # indices for the new parameters
    group = {**groups[0], "params": list(have) + list(range(start, start + count - len(have)))}
    state = {idx: {k: v.clone() if torch.is_tensor(v) else v for k, v in per.items()}
             for idx, per in opt_state["state"].items()}
    return {"state": state, "param_groups": [group]}


__all__ = ["append_adam_params", "index_maps", "latent_index", "widen_adam_state",
           "widen_state"]
