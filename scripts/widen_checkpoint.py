"""Write a training checkpoint of a model widened to a larger N and/or M, or given the rate
modulation of its transforms, resumable with Adam state.

For the side-by-side runs of two model sizes from the same point (issue 3): the wide run starts
from the narrow run's checkpoint with the same function (adapix.widen.widen_state), the same Adam
moments in the trained block (adapix.widen.widen_adam_state), step count, elapsed time and RNG
state, so the two runs differ only in N. Resume it with the same command and ``model.N``:

    python scripts/widen_checkpoint.py runs/s18/checkpoint.pt runs/s18w --N 128
    adapix train --config configs/default.toml --set model.N=128 --set train.out=runs/s18w ...

The same for the latent's channels M (each channel group grows at its end; adapix.widen):

    python scripts/widen_checkpoint.py runs/s20/checkpoint.pt runs/s20m --M 192
    adapix train --config configs/default.toml --set model.M=192 --set train.out=runs/s20m ...

The same for the rate modulation (adapix.ratecond: tables at the identity, same function; the
tables are the model's last parameters, so the Adam state of all others is kept and they start
afresh), for the side-by-side run of the shipped model with and without it:

    python scripts/widen_checkpoint.py runs/s18/checkpoint.pt runs/s19b --rate-modulation
    adapix train --config configs/default.toml --set model.rate_modulation=true \
        --set train.out=runs/s19b ...

(``train.init`` also widens and adds the modulation, from weights or a checkpoint, but starts
Adam and the step count afresh.)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from adapix.config import ModelConfig
from adapix.model import AdapixModel
from adapix.ratecond import add_rate_modulation
from adapix.train.checkpoint import atomic_save
from adapix.train.loop import trainable_parameters
from adapix.widen import append_adam_params, index_maps, widen_adam_state, widen_state


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="checkpoint.pt of the narrow run")
    ap.add_argument("out", help="folder of the wide run (checkpoint.pt is written there)")
    ap.add_argument("--N", type=int, default=None,
                    help="the new channel count of g_a / g_s (default: unchanged)")
    ap.add_argument("--M", type=int, default=None,
                    help="the new channel count of the latent y (default: unchanged)")
    ap.add_argument("--rate-modulation", action="store_true",
                    help="add the rate modulation of the transforms (adapix.ratecond)")
    ap.add_argument("--stage", default="main", help="the training stage (default: main)")
    args = ap.parse_args(argv)
    out = Path(args.out) / "checkpoint.pt"
    if out.exists():
        print(f"error: {out} exists; choose another folder", file=sys.stderr)
        return 2
    if not Path(args.checkpoint).is_file():
        print(f"error: no checkpoint {args.checkpoint}", file=sys.stderr)
        return 2
    ck = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    try:
        old = ModelConfig.from_dict(ck["model_config"])
        N = old.N if args.N is None else args.N
        M = old.M if args.M is None else args.M
        if (N, M) == (old.N, old.M) and not (args.rate_modulation and not old.rate_modulation):
            raise ValueError("nothing to do: give a larger --N or --M, or --rate-modulation")
        state, opt = ck["model"], ck["opt"]
        if args.rate_modulation and not old.rate_modulation:
            state = add_rate_modulation(state, len(old.lambdas), old.N, old.Ns)
            old = dataclasses.replace(old, rate_modulation=True)
            narrow = AdapixModel(old)
            opt = append_adam_params(opt, len(trainable_parameters(narrow, args.stage)))
        wide = AdapixModel(dataclasses.replace(old, N=N, M=M))
        state = widen_state(state, old, wide)
        wide.load_state_dict(state)
        maps, names = index_maps(old, wide), {id(p): k for k, p in wide.named_parameters()}
        params = trainable_parameters(wide, args.stage)
        opt = widen_adam_state(opt, params, [maps.get(names[id(p)]) for p in params])
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_save({**ck, "model": wide.state_dict(), "opt": opt,
                 "model_config": dataclasses.asdict(wide.cfg)}, out)
    mod = ", rate modulation added" if args.rate_modulation else ""
    print(f"wrote {out}: N {ck['model_config']['N']} -> {N}, M {ck['model_config']['M']} -> {M}"
          f"{mod}, step {ck['step']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
