"""``adapix train``: train a model from a TOML config, resumable; ends by exporting weights."""

from __future__ import annotations

import sys

from .common import Parser, fail

DESCRIPTION = """Train an Adapix model on folders of photos (JPEG/PNG, recursive).

  adapix train --config configs/default.toml
  adapix train --config configs/default.toml --set train.steps=5000 --set model.N=64

Every value of the config can be overridden with --set section.key=value (sections: model,
train). Checkpoints go to train.out every few minutes and on Ctrl-C/SIGTERM; running the
same command again resumes exactly (use --fresh to start over). When train.steps is reached
the model is exported to <out>/weights.safetensors (or train.export). On a GPU add
--set train.device=cuda; for several processes use torchrun (DistributedDataParallel)."""


def build_parser() -> Parser:
    p = Parser(prog="adapix train", description=DESCRIPTION)
    p.add_argument("--config", help="TOML file with [model] and [train] sections")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. train.lr=3e-4 (repeatable)")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..train.config import load_run_config
    try:
        run = load_run_config(args.config, args.overrides)
    except (OSError, ValueError) as exc:
        return fail("adapix train", str(exc))
    from ..train.loop import Trainer
    try:
        trainer = Trainer(run, resume=not args.fresh, progress=not args.no_progress)
        trainer.fit()
    except (FileNotFoundError, ValueError) as exc:
        return fail("adapix train", str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
