"""``adapix export``: training checkpoint -> weights file (config, tables, format version)."""

from __future__ import annotations

import sys
from pathlib import Path

from .common import Parser, fail


def build_parser() -> Parser:
    p = Parser(prog="adapix export", description="Export a training checkpoint (checkpoint.pt) "
               "to a safetensors weights file that `adapix encode --model` loads. Builds the "
               "entropy-coding tables and stores them with the config.")
    p.add_argument("checkpoint", help="checkpoint.pt written by adapix train")
    p.add_argument("-o", "--output", required=True, help="weights file to write (.safetensors)")
    p.add_argument("--model-id", default=None, help="model id written into .apx files "
                   "(default: the training config's model_id)")
    p.add_argument("--fp32", action="store_true", help="store float32 (default: fp16 weights)")
    p.add_argument("--postfilter", action="store_true", help="mark the post-filter as trained")
    p.add_argument("--notes", default="", help="free text stored in the metadata")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from ..config import ModelConfig
    from ..model import AdapixModel
    from ..train.checkpoint import checkpoint_postfilter_trained
    from ..weights import build_tables, export_weights
    try:
        ck = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
        cfg = ModelConfig.from_dict(ck["model_config"])
        model = AdapixModel(cfg)
        model.load_state_dict(ck["model"])
    except Exception as exc:  # noqa: BLE001 -- any unreadable checkpoint is a user error here
        return fail("adapix export", f"cannot read checkpoint {args.checkpoint}: "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    model.eval()
    build_tables(model)
    tc = ck.get("train_config", {})
    model_id = args.model_id or tc.get("model_id", "adapix-dev")
    postfilter = args.postfilter or checkpoint_postfilter_trained(ck)
    h = export_weights(model, Path(args.output), model_id, fp16=not args.fp32,
                       postfilter_trained=postfilter, steps=int(ck.get("step", 0)),
                       notes=args.notes)
    print(f"exported {args.output}: model id {model_id}, step {ck.get('step', 0)}, "
          f"hash {h.hex()}, post-filter {'trained' if postfilter else 'not trained'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
