"""Function-preserving widening of the transforms: a trained model with N channels -> N' > N.

A larger model need not start from scratch. Every tensor of the wide model that has an N-sized
dimension gets the trained values in its leading block; the new channels start so that they are
exactly zero everywhere, so the wide model computes the same function as the narrow one (the idea of
Chen et al., "Net2Net: Accelerating learning via knowledge transfer", ICLR 2016, with zero
instead of copied units):

    layer producing channels (Conv2d, Linear: dim 0; ConvTranspose2d: dim 1)
        new output channels: weight 0, bias 0      -> the new activations are 0
    layer consuming channels (Conv2d, Linear: dim 1; ConvTranspose2d: dim 0)
        new input channels: the fresh model's random init (they multiply zeros, so change nothing,
        and they give the zero-initialised incoming weights a gradient)
    GDN (beta (C,), gamma (C, C)): the fresh init around the trained block; a zero input channel
        stays zero (x / norm, x * norm) and adds gamma * 0 to the other channels' norms
    rate-modulation tables (K, 3, N) (adapix.ratecond), if any: the new channels at zero, the
        identity

Shapes: only ``ModelConfig.N`` may change (the channels of g_a, g_s and the generator's per-image
synthesis weights, (B, N, 3, 5, 5)); M, Nh and the entropy model are copied unchanged.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .config import ModelConfig
from .layers import GDN


def _out_dim(module: nn.Module) -> int:
    """The dimension of a weight that indexes output channels."""
    return 1 if isinstance(module, nn.ConvTranspose2d) else 0


def widen_state(state: dict[str, torch.Tensor], old: ModelConfig, new_model: nn.Module
                ) -> dict[str, torch.Tensor]:
    """The state of a model with config ``old`` made to fit ``new_model`` (an AdapixModel whose
    config differs only in a larger N), computing the same function up to float rounding.
    ``new_model``'s own (freshly initialised) parameters provide the random init of the new input
    channels; it is not modified."""
    new_cfg: ModelConfig = new_model.cfg
    differ = sorted(f.name for f in dataclasses.fields(ModelConfig)
                    if f.name not in ("N", "lambdas")
                    and getattr(old, f.name) != getattr(new_cfg, f.name))
    if differ:
        raise ValueError(f"only N can be widened; the configs also differ in {', '.join(differ)}")
    if new_cfg.N < old.N:
        raise ValueError(f"widening needs N to grow, got {old.N} -> {new_cfg.N}")
    fresh = new_model.state_dict()
    out = dict(state)
    for name, module in new_model.named_modules():
        for pname, param in module.named_parameters(recurse=False):
            key = f"{name}.{pname}" if name else pname
            src = state.get(key)
            if src is None:
                raise ValueError(f"the source state has no {key}")
            if src.shape == param.shape:
                continue
            if src.dim() != param.dim() or any(a > b for a, b in zip(src.shape, param.shape)):
                raise ValueError(f"{key}: cannot widen {tuple(src.shape)} to {tuple(param.shape)}")
            wide = fresh[key].detach().clone().to(src.dtype)
            if not isinstance(module, GDN):
                if pname == "bias":
                    wide.zero_()
                else:
                    dim_out = _out_dim(module)
                    wide.narrow(dim_out, src.shape[dim_out],
                                wide.shape[dim_out] - src.shape[dim_out]).zero_()
            wide[tuple(slice(0, n) for n in src.shape)] = src
            out[key] = wide
    return out


def widen_adam_state(opt_state: dict, params: list[torch.Tensor]) -> dict:
    """An Adam ``state_dict()`` for the narrow model's trainable parameters made to fit ``params``
    (the wide model's, in the same order). Where a parameter grew, the first moment of the new
    entries is 0 and the second the mean of the trained block's, so the new entries start at the
    step size of their neighbours instead of the large first steps of an empty second moment; the
    step counts are kept. The result shares no tensor with ``opt_state``."""
    groups = opt_state["param_groups"]
    if sum(len(g["params"]) for g in groups) != len(params):
        raise ValueError(f"the optimiser state has {sum(len(g['params']) for g in groups)} "
                         f"parameters, the model {len(params)}")
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
            fill = 0.0 if name == "exp_avg" else float(old.float().mean())
            wide = torch.full(shape, fill, dtype=old.dtype)
            wide[tuple(slice(0, n) for n in old.shape)] = old
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


__all__ = ["append_adam_params", "widen_adam_state", "widen_state"]
